"""JetStream's refusals of a consumer, as the server really sends them, mapped to 4xx
naming the request parameter that caused them (issue 12, item 4)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import APIError

from common.errors import Invalid, Unavailable
from common.settings import NatsSettings
from gateway.feed.refusals import refusal


@pytest.mark.parametrize(
    "filters, code",
    [
        (["{p}.events.todo_list.*", "{p}.events.todo_list.groceries"], 10138),  # overlapping
        (["{p}.events.todo_list.a", "{p}.events.>"], 10138),
        (["{p}.events.todo_list.a", ""], 10139),  # an empty filter
    ],
)
async def test_a_consumer_refused_for_its_filters_is_a_422_naming_topics(
    nc: Client, nats_settings: NatsSettings, filters: list[str], code: int
) -> None:
    config = ConsumerConfig(
        durable_name="refused",
        ack_policy=AckPolicy.ALL,
        filter_subjects=[f.format(p=nats_settings.prefix) for f in filters],
    )
    with pytest.raises(APIError) as caught:
        await nc.jetstream().add_consumer(nats_settings.stream, config)
    assert caught.value.err_code == code
    error = refusal(caught.value)
    assert isinstance(error, Invalid) and error.detail["field"] == "topics"
    assert "retry_after" not in error.detail


async def test_a_refusal_that_is_not_the_requests_fault_stays_a_retryable_503(
    nc: Client, nats_settings: NatsSettings
) -> None:
    with pytest.raises(APIError) as caught:
        await nc.jetstream().consumer_info("NO_SUCH_STREAM", "x")
    error = refusal(caught.value)
    assert isinstance(error, Unavailable) and error.detail["retry_after"] == 1

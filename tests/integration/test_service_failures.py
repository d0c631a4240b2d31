"""What a client sees when a service fails on its request, over a real nats-server.

A bug (the app's `decide`, a query's hook or SQL raising) can never succeed on a retry:
500 `internal`, the exception's text kept in the service's log only. Failing to reach
something (NATS, a socket, a timeout) may pass: 503 with a retry hint.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout

from common import bus
from common.catalogue import Catalogue
from common.errors import Internal, IronstarError, Unavailable
from common.settings import NatsSettings
from common.subjects import Subjects
from gateway.api.errors import error_response
from tests.apps import inventory
from tests.support.commands import command
from writer.handler import CommandHandler
from writer.store import JetStreamEventStore

SECRET = "password=hunter2 at /srv/app/billing.py"


def _bug() -> None:
    raise KeyError(SECRET)


def _sql_bug() -> None:
    duckdb.connect().execute("SELECT * FROM no_such_table_of_the_app")


def _nats_timeout() -> None:
    raise NatsTimeout


def _socket() -> None:
    raise ConnectionResetError(SECRET)


async def _failure(nc: Client, fail: Callable[[], None]) -> IronstarError:
    subject = f"test.{uuid.uuid4().hex}"

    async def handler(msg: Msg) -> bytes:
        fail()
        return b"{}"

    sub = await bus.serve(nc, subject, "q", handler, concurrency=2)
    try:
        with pytest.raises(IronstarError) as caught:
            await bus.request(nc, subject, b"{}", timeout_s=5, what="test service")
    finally:
        await sub.unsubscribe()
    return caught.value


@pytest.mark.parametrize("fail", [_bug, _sql_bug], ids=["app raises", "query SQL fails"])
async def test_a_bug_in_a_service_is_a_bare_500_without_retry_or_internals(
    nc: Client, fail: Callable[[], None]
) -> None:
    error = await _failure(nc, fail)
    assert isinstance(error, Internal)
    assert SECRET not in error.message and "no_such_table" not in error.message
    assert "correlation id" in error.message
    response = error_response(error)
    assert response.status_code == 500
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize("fail", [_nats_timeout, _socket], ids=["nats timeout", "socket reset"])
async def test_failing_to_reach_something_is_a_503_to_retry(
    nc: Client, fail: Callable[[], None]
) -> None:
    error = await _failure(nc, fail)
    assert type(error) is Unavailable
    assert SECRET not in error.message
    response = error_response(error)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"


def _returns_a_command(state: Any, command: Any) -> Any:
    return [command]


def _returns_one_event(state: Any, command: Any) -> Any:
    return inventory.domain.ItemRegistered(name="bolt")


def _returns_an_event_its_struct_refuses(state: Any, command: Any) -> Any:
    return [inventory.domain.ItemRegistered(name=10**30)]  # type: ignore[arg-type]


def _makes_what_evolve_refuses(state: Any, command: Any) -> Any:
    return [inventory.domain.StockShipped(quantity=5)]  # nothing on hand: evolve refuses


@pytest.mark.parametrize(
    "decide",
    [
        _returns_a_command,
        _returns_one_event,
        _returns_an_event_its_struct_refuses,
        _makes_what_evolve_refuses,
    ],
    ids=["a command", "not a list", "an event out of its Struct", "an event evolve refuses"],
)
async def test_a_decision_that_is_not_the_aggregates_possible_events_is_never_stored(
    nc: Client, nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch, decide: Any
) -> None:
    stock = inventory.app.aggregates[0]
    strict = dataclasses.replace(stock, decide=decide, evolve=_strict(stock.evolve))
    app = dataclasses.replace(inventory.app, aggregates=(strict,))
    monkeypatch.setattr("common.catalogue._cached", Catalogue(app))
    store = JetStreamEventStore(nc, nats_settings.stream, Subjects(nats_settings.prefix), 5.0)
    handler = CommandHandler(store, max_retries=8, cache_size=100)
    register = command("i", "register_item", "c1", name="bolt")
    with pytest.raises((TypeError, ValueError)):
        await handler.handle("stock_item", register)
    info = await nc.jetstream().stream_info(nats_settings.stream)
    assert info.state.messages == 0


def _strict(evolve: Any) -> Any:
    def strict(state: Any, event: Any) -> Any:
        after = evolve(state, event)
        if after.on_hand < 0:
            raise ValueError(f"only {state.on_hand} on hand")
        return after

    return strict

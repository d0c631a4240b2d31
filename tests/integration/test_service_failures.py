"""What a client sees when a service fails on its request, over a real nats-server.

A bug (the app's `decide`, a query's hook or SQL raising) can never succeed on a retry:
500 `internal`, the exception's text kept in the service's log only. Failing to reach
something (NATS, a socket, a timeout) may pass: 503 with a retry hint.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import duckdb
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout

from common import bus
from common.errors import Internal, IronstarError, Unavailable
from gateway.errors import error_response

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
            await bus.request(nc, subject, b"{}", timeout=5, what="test service")
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

"""The stream's consumer limit and a gateway's connection limit, sized together (issue 15)."""

from __future__ import annotations

from common.settings import GatewaySettings, NatsSettings
from gateway.feed.consumers import sizing_problem


def test_the_default_limits_let_one_gateway_reach_its_connection_limit() -> None:
    gateway = GatewaySettings()
    assert gateway.sse_max_connections >= 10_000
    assert not sizing_problem(
        NatsSettings().max_consumers, gateway.sse_reserved_consumers, gateway.sse_max_connections
    )


def test_a_connection_limit_the_stream_cannot_hold_is_named_with_its_fix() -> None:
    problem = sizing_problem(10_000, 100, 10_000)  # the 10,001st consumer was refused
    assert "at most 9899 feeds" in problem
    assert "IRONSTAR_NATS_MAX_CONSUMERS" in problem
    assert sizing_problem(0, 100, 5_000)  # no limit set: the server's 1,000 applies
    assert not sizing_problem(10_101, 100, 10_000)

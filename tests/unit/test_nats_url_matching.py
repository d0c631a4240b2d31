"""A NATS URL names the running stack whatever loopback name it uses (ironstar/local.py)."""

from __future__ import annotations

import pytest

from ironstar.local import same_servers


@pytest.mark.parametrize(
    "given",
    [
        "nats://localhost:4300",
        "nats://127.0.0.1:4300/",
        "nats://[::1]:4300",
        "localhost:4300",
        "nats://LOCALHOST:4300",
    ],
)
def test_every_loopback_name_matches_the_stack_listening_on_127_0_0_1(given: str) -> None:
    assert same_servers(given) == same_servers("nats://127.0.0.1:4300")


def test_another_port_or_host_does_not_match() -> None:
    stack = same_servers("nats://127.0.0.1:4300")
    assert same_servers("nats://localhost:4301") != stack
    assert same_servers("nats://10.0.0.5:4300") != stack
    assert same_servers("nats://127.0.0.1") == same_servers("nats://localhost:4222")


def test_a_cluster_url_matches_server_by_server() -> None:
    cluster = same_servers("nats://127.0.0.1:4300,nats://127.0.0.1:4301")
    assert same_servers("nats://localhost:4301") <= cluster
    assert same_servers("nats://[::1]:4300, nats://localhost:4301") == cluster

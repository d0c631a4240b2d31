"""Ports chosen for services never collide with the local ports of outgoing connections."""

from __future__ import annotations

import socket

from ironstar.ports import _ephemeral_floor, free_port


def test_chosen_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    floor = _ephemeral_floor()
    chosen = [free_port() for _ in range(300)]
    assert len(set(chosen)) == len(chosen)
    assert all(10_000 <= port < floor for port in chosen), (floor, chosen)


def test_a_chosen_port_can_be_listened_on_at_once() -> None:
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass

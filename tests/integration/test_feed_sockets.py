"""The kernel's counters of a TCP connection's sent bytes (`gateway/feed/sockets.py`) on a real
loopback connection: what was sent is always acknowledged + queued, and only what the peer's
host took counts as acknowledged."""

from __future__ import annotations

import socket

from gateway.feed import sockets
from tests.support.waiting import eventually


def _pair(receive_buffer: int) -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    peer.connect(listener.getsockname())
    sender, _ = listener.accept()
    sender.setblocking(False)
    return listener, sender, peer


async def test_bytes_a_peer_does_not_read_stay_queued_and_are_acknowledged_once_it_reads() -> None:
    listener, sender, peer = _pair(4096)
    try:
        assert sockets.tcp(sender) is sender
        sent = 0
        try:
            while sent < 1 << 20:  # until the kernel's queue is full
                sent += sender.send(b"x" * 65536)
        except BlockingIOError:
            pass
        acked, queued = sockets.sent(sender)
        assert acked + queued == sent
        assert acked < 64 * 1024 < queued  # the peer's host took only its small buffer
        received = 0
        while received < sent:
            received += len(peer.recv(1 << 20))

        async def counters() -> tuple[int, int]:
            return sockets.sent(sender)

        assert await eventually(counters, lambda c: c == (sent, 0))
    finally:
        for s in (sender, peer, listener):
            s.close()


def test_a_socket_without_tcp_counters_is_not_taken_for_one() -> None:
    left, right = socket.socketpair()  # AF_UNIX: no acknowledgements to read
    try:
        assert sockets.tcp(left) is None
        assert sockets.tcp(None) is None
    finally:
        left.close()
        right.close()

"""What the kernel knows of a TCP connection's sent bytes (Linux): how many its peer
acknowledged (`tcp_info.tcpi_bytes_acked`, Linux >= 4.2) and how many wait in the send queue,
unsent or unacknowledged (`SIOCOUTQ`, the ioctl `TIOCOUTQ` on a socket: tcp(7)). Used by a
named feed to move its consumer only past frames the client's host acknowledged
(`gateway/feed/delivery.py`, attack15r F1). Two syscalls, only when a move is due."""

from __future__ import annotations

import fcntl
import socket
import struct
import sys
import termios
from typing import Any, Protocol

_BYTES_ACKED = struct.Struct("=Q")  # u64 at byte 120 of struct tcp_info (include/uapi/linux/tcp.h)
_AT = 120
_OUTQ = struct.Struct("=i")


class Sock(Protocol):
    """The part of a socket (asyncio's `TransportSocket`) read here."""

    def fileno(self) -> int: ...

    def getsockopt(self, level: int, option: int, size: int) -> bytes: ...


def tcp(sock: Any) -> Sock | None:
    """`sock` (an asyncio transport's socket) when the kernel reports its acknowledged bytes:
    a TCP socket on Linux whose tcp_info carries `bytes_acked`; None else."""
    if sys.platform != "linux" or sock is None:
        return None
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        sent(sock)
    except (OSError, AttributeError, ValueError):
        return None
    return sock  # type: ignore[no-any-return]


def sent(sock: Sock) -> tuple[int, int]:
    """(bytes acknowledged by the peer, bytes in the send queue) of the TCP socket `sock`;
    OSError when it is closed, ValueError when its tcp_info has no `bytes_acked` (Linux < 4.2)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _AT + _BYTES_ACKED.size:
        raise ValueError("tcp_info without bytes_acked (Linux < 4.2)")
    fd = sock.fileno()
    if fd < 0:
        raise OSError("the socket is closed")
    outq = bytearray(_OUTQ.size)
    fcntl.ioctl(fd, termios.TIOCOUTQ, outq)
    return _BYTES_ACKED.unpack_from(info, _AT)[0], _OUTQ.unpack(outq)[0]

"""Ports for `ironstar up` and `ironstar cluster up`: is one free, and if not, who has it.

A port is free when a listening socket could bind it now. The check sets `SO_REUSEADDR`
as the gateway and nats-server do, so connections of a stack that just stopped (sockets
in TIME_WAIT, e.g. an SSE client's) do not keep its successor from starting.
"""

from __future__ import annotations

import json
import random
import socket
import urllib.error
import urllib.request
from pathlib import Path

from ironstar.rerun import again, typed

GATEWAY_SERVICE = "ironstar-gateway"  # what an Ironstar gateway's /healthz calls itself


LOWEST_CHOSEN = 10_000  # below: ports people configure by hand (8000, 4222, 5432, ...)
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    """The first port the kernel gives outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A port no listener holds now, chosen at random below the kernel's ephemeral range.

    A port is chosen before the process that listens on it starts; had the kernel picked it
    (bind to 0), any outgoing connection made meanwhile (a NATS route, a client) could take
    it as its local port, and the listener would fail with "Address already in use". Ports
    below the ephemeral range are never given to outgoing connections. No port is handed
    out twice by one process.
    """
    floor = _ephemeral_floor()
    candidates = range(LOWEST_CHOSEN, floor) if floor > LOWEST_CHOSEN + 1_000 else range(0)
    for _ in range(200 if candidates else 0):
        port = random.choice(candidates)
        if port not in _handed_out and _bindable(host, port):
            _handed_out.add(port)
            return port
    with socket.socket() as sock:  # no room below the ephemeral range: let the kernel choose
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_is_free(host: str, port: int) -> bool:
    """Whether a listening socket can bind `host`:`port` now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def serves_ironstar(url: str) -> bool:
    """An Ironstar gateway answers `/healthz` at `url`."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as reply:
            body = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("service") == GATEWAY_SERVICE


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def next_free(host: str, after: int, span: int = 1) -> int:
    """The first port above `after` that starts `span` free ports in a row (for N gateways)."""
    for first in range(after + 1, min(after + 200, 65536 - span)):
        if all(port_is_free(host, p) for p in range(first, first + span)):
            return first
    return free_port(host)


def busy_http(host: str, port: int, first: int | None = None, span: int = 1) -> str:
    """Why `host:port` cannot be the gateway's, and the user's command again with a port that
    is free now (`first`: the port asked for, when `port` is one of `span` in a row)."""
    url = f"http://{host}:{port}"
    if serves_ironstar(url):
        who = f"an Ironstar gateway already serves {url}/ (see `{typed(['status', '--url', url])}`)"
    elif _listens(host, port):
        who = "another program listens there (not Ironstar)"
    else:
        who = "a socket that does not listen holds it"
    other = next_free(host, port if first is None else first, span)
    hint = again({"--http-port": str(other)})
    return f"HTTP port {host}:{port} is busy: {who}. Choose another port: `{hint}`"

"""Ports for `ironstar up` and `ironstar cluster up`: is one free, and if not, who has it.

A port is free when a listening socket could bind it now. The check sets `SO_REUSEADDR`
as the gateway and nats-server do, so connections of a stack that just stopped (sockets
in TIME_WAIT, e.g. an SSE client's) do not keep its successor from starting.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from ironstar.rerun import again, typed

GATEWAY_SERVICE = "ironstar-gateway"  # what an Ironstar gateway's /healthz calls itself


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
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

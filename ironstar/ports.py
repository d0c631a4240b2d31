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


def busy_http(host: str, port: int) -> str:
    """Why `host:port` cannot be the gateway's, and how to choose another port."""
    url = f"http://{host}:{port}"
    if serves_ironstar(url):
        who = f"an Ironstar gateway already serves {url}/ (see `ironstar status --url {url}`)"
    elif _listens(host, port):
        who = "another program listens there (not Ironstar)"
    else:
        who = "a socket that does not listen holds it"
    other = port + 1
    return (
        f"HTTP port {host}:{port} is busy: {who}. Choose another port: "
        f"`IRONSTAR_GATEWAY_PORT={other} make run`, `make run ARGS='--http-port {other}'` "
        f"or `ironstar up --http-port {other}`"
    )

"""The gateway behind Debian's nginx running `deploy/nginx/ironstar.conf`, over real sockets.

The proxy's promises: SSE flows unbuffered over HTTP/2 + TLS; a gateway restart behind it
is a 200 `retry:` stanza, so a client with EventSource's rules comes back and gets every
event exactly once, in order; each real client has its own rate-limit bucket, and no
client picks its bucket with a forged `X-Forwarded-For`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ironstar.natsserver import free_port
from tests.support.eventsource import EventSourceClient
from tests.support.nginx import Nginx, behind_nginx, require
from tests.support.processes import Service
from tests.support.secured import SECRET, token
from tests.support.stack import Stack, send
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


LIMITED = {"IRONSTAR_LIMIT_REQUESTS_PER_S": "0.2", "IRONSTAR_LIMIT_BURST": "5"}


@pytest.fixture
def proxied(service_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Stack, Nginx]]:
    with behind_nginx(service_env, tmp_path) as running:
        yield running


def _tls(proxy: Nginx) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(proxy.cert))
    return context


def _list() -> str:
    return f"n{uuid.uuid4().hex[:8]}"


def test_nginx_speaks_http2_over_tls_to_browsers(proxied: tuple[Stack, Nginx]) -> None:
    _, proxy = proxied
    context = _tls(proxy)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_the_feed_streams_over_http2_through_nginx(proxied: tuple[Stack, Nginx]) -> None:
    stack, proxy = proxied
    list_id = _list()
    stack.command(list_id, "add_todo", todo_id="t0", text="over h2")
    curl = require(Path(shutil.which("curl") or "/usr/bin/curl"), "curl")
    # curl speaks HTTP/2 here (httpx would need h2); the feed never ends, so curl stops
    # after a few seconds with everything it received.
    done = subprocess.run(
        [str(curl), "-sS", "-N", "-i", "--http2", "--cacert", str(proxy.cert), "--max-time", "4",
         f"{proxy.https}/api/events?topics=todo_list:{list_id}&last_event_id=0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.stdout.startswith("HTTP/2 200"), done.stdout[:300] + done.stderr
    assert "content-type: text/event-stream" in done.stdout.lower()
    assert "event: todo_added" in done.stdout and "over h2" in done.stdout


async def test_events_flow_through_nginx_one_by_one_as_they_are_appended(
    proxied: tuple[Stack, Nginx],
) -> None:
    stack, proxy = proxied
    list_id = _list()
    client = await _following(proxy, list_id)
    try:
        for i in range(3):
            await asyncio.to_thread(stack.command, list_id, "add_todo", todo_id=f"t{i}", text="x")
            # Unbuffered: each event arrives before the next one is even sent.
            await eventually(lambda: _value(_added(client)), lambda seen, i=i: len(seen) == i + 1)
    finally:
        await client.stop()
    assert client.fatal is None


async def test_a_gateway_restart_behind_nginx_is_resumed_exactly_once_in_order(
    proxied: tuple[Stack, Nginx],
) -> None:
    stack, proxy = proxied
    list_id = _list()
    client = await _following(proxy, list_id, speed=0.2)
    try:
        for i in range(5):
            await asyncio.to_thread(stack.command, list_id, "add_todo", todo_id=f"a{i}", text="x")
        await eventually(lambda: _value(_added(client)), lambda seen: len(seen) == 5)

        await asyncio.to_thread(stack.gateway.stop)
        # While it is down, another gateway (not behind this nginx) takes commands, and
        # the client keeps asking nginx, which answers the retry stanza.
        other_env = {**stack.env, "IRONSTAR_GATEWAY_PORT": str(free_port())}
        other = await asyncio.to_thread(Service("gateway", other_env, stack.workdir).start)
        other_url = f"http://127.0.0.1:{other_env['IRONSTAR_GATEWAY_PORT']}"
        try:
            for i in range(5):
                payload = {"todo_id": f"b{i}", "text": "x"}
                await asyncio.to_thread(send, other_url, "todo_list", list_id, "add_todo", payload)
            retried = await _stanzas(proxy)
            await eventually(lambda: _stanzas(proxy), lambda n: n >= retried + 2, timeout=20)
        finally:
            await asyncio.to_thread(other.stop)

        await asyncio.to_thread(stack.restart_gateway_after_stop)
        for i in range(5):
            await asyncio.to_thread(stack.command, list_id, "add_todo", todo_id=f"c{i}", text="x")
        await eventually(lambda: _value(_added(client)), lambda seen: len(seen) >= 15, timeout=30)
    finally:
        await client.stop()
    assert client.fatal is None, client.fatal
    expected = [f"{batch}{i}" for batch in "abc" for i in range(5)]
    assert _added(client) == expected
    assert client.connections >= 3  # the first, at least one retry stanza, the resumed one


def test_each_client_behind_nginx_has_its_own_rate_limit_and_cannot_forge_another(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    with behind_nginx({**service_env, **LIMITED}, tmp_path) as (_, proxy):
        # A flood from one client, forging a new X-Forwarded-For on every request: nginx
        # adds the real peer (127.0.0.2); the gateway takes the rightmost untrusted entry.
        flood = _burst(proxy, "127.0.0.2", 20, forge=True)
        # Another user behind the same proxy is not touched by it.
        other = _burst(proxy, "127.0.0.3", 5, forge=False)
    assert flood.count(200) <= 8 and flood.count(429) >= 12, flood
    assert other == [200] * 5


def _burst(proxy: Nginx, source: str, count: int, forge: bool) -> list[int]:
    """Status codes of `count` GET /healthz through nginx from the address `source`."""
    transport = httpx.HTTPTransport(local_address=source, verify=_tls(proxy))
    with httpx.Client(transport=transport, base_url=proxy.https, timeout=10) as http:
        return [
            http.get(
                "/healthz", headers={"X-Forwarded-For": f"198.51.100.{i}"} if forge else {}
            ).status_code
            for i in range(count)
        ]


@pytest.mark.parametrize(
    ("trusted", "peer"),
    [
        ("", "127.0.0.1"),  # the default trusts nobody, loopback included
        ("127.0.0.1", "127.0.0.4"),  # a peer that is not the configured proxy
        ("10.0.0.0/8,127.0.0.1", "127.0.0.5"),
    ],
)
def test_a_forged_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(
    service_env: dict[str, str], tmp_path: Path, trusted: str, peer: str
) -> None:
    env = {**service_env, **LIMITED}
    if trusted:
        env["IRONSTAR_GATEWAY_TRUSTED_PROXIES"] = trusted
    stack = Stack(env, tmp_path)
    try:
        # Straight to the gateway, a new forged X-Forwarded-For on every request.
        transport = httpx.HTTPTransport(local_address=peer)
        with httpx.Client(transport=transport, base_url=stack.url, timeout=10) as http:
            codes = [
                http.get("/healthz", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                for i in range(20)
            ]
    finally:
        stack.stop()
    assert codes.count(429) >= 14, codes


async def _following(proxy: Nginx, list_id: str, speed: float = 1.0) -> EventSourceClient:
    """An EventSource-style client on the list's feed through nginx, once it is connected."""
    url = f"{proxy.https}/api/events?topics=todo_list:{list_id}"
    client = EventSourceClient(url, verify=_tls(proxy), speed=speed).start()
    try:
        await eventually(lambda: _value(client.connections), lambda n: n >= 1)
    except BaseException:
        await client.stop()
        raise
    return client


async def _value(value: object) -> object:
    return value


def _added(client: EventSourceClient) -> list[str]:
    """todo ids of the `todo_added` events the client received, in order of arrival."""
    return [
        json.loads(e.data)["payload"]["todo_id"] for e in client.events if e.event == "todo_added"
    ]


async def _stanzas(proxy: Nginx) -> int:
    """Retry stanzas nginx has answered: 200 answers to /api/events of a few bytes."""
    log = (proxy.directory / "access.log").read_text()
    return sum(1 for line in log.splitlines() if "/api/events" in line and '" 200 ' in line
               and int(line.split('" 200 ')[1].split()[0]) < 40)  # fmt: skip


def test_a_cookie_post_through_nginx_passes_from_the_page_origin_and_no_other(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # A browser that sends Origin but no Sec-Fetch-Site, through the shipped config (which
    # passes the browser's Host, port included), to a gateway with auth on.
    with behind_nginx({**service_env, "IRONSTAR_AUTH_SECRET": SECRET}, tmp_path) as (_, proxy):
        cookies = {"ironstar_session": token("commands:todo_list")}
        body = {"type": "add_todo", "payload": {"todo_id": "t", "text": "milk"}}
        # The page's host and port under plain http is another origin (the gateway takes
        # the scheme from nginx's X-Forwarded-Proto, as it trusts 127.0.0.1).
        plain = proxy.https.replace("https://", "http://")
        evil = proxy.https + ".evil.example"
        with httpx.Client(base_url=proxy.https, verify=_tls(proxy), cookies=cookies) as http:
            codes = {
                origin: http.post(
                    f"/api/commands/todo_list/{_list()}", json=body, headers={"Origin": origin}
                ).status_code
                for origin in (proxy.https, "https://evil.example", evil, plain)
            }
    assert codes == {proxy.https: 200, "https://evil.example": 401, evil: 401, plain: 401}

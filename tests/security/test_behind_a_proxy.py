"""What changes when the gateway sits behind a proxy: probes with HEAD, the public origin of
cookie POSTs when the proxy rewrites `Host`, and settings that would trust the wrong peers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.errors import Invalid
from common.origins import origin_of, proxy_networks
from common.settings import GatewaySettings
from ironstar.natsserver import NatsServer
from tests.support.processes import run_cli
from tests.support.secured import SecuredStack, bearer, running, token, unique

pytestmark = pytest.mark.e2e
PUBLIC = "https://dashboard.example.org"


@pytest.fixture(scope="module")
def stack(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredStack]:
    workdir = tmp_path_factory.mktemp("proxied")
    with running(nats_server, workdir, IRONSTAR_GATEWAY_PUBLIC_ORIGIN=PUBLIC + ":443/") as up:
        yield up


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz"])
def test_head_answers_like_get_without_a_body(stack: SecuredStack, path: str) -> None:
    with httpx.Client(base_url=stack.base, timeout=10) as http:
        got, head = http.get(path), http.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert int(head.headers["content-length"]) == len(got.content)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_metrics_are_the_classic_text_format_with_one_charset(
    stack: SecuredStack, method: str
) -> None:
    """What a scraper (directly or through a proxy) parses: `text/plain; version=0.0.4;
    charset=utf-8`, each parameter once, and a body in that format."""
    reply = httpx.request(method, f"{stack.base}/metrics", headers=bearer("admin"), timeout=10)
    assert reply.status_code == 200
    kind, *params = [part.strip() for part in reply.headers["content-type"].split(";")]
    assert kind == "text/plain"
    assert sorted(params) == ["charset=utf-8", "version=0.0.4"]
    if method == "GET":
        names = {f.name for f in text_string_to_metric_families(reply.text)}
        assert "sse_connections" in names


def test_head_of_the_feed_is_refused_without_opening_a_stream(stack: SecuredStack) -> None:
    reply = httpx.head(
        f"{stack.base}/api/events?topics=todo_list", headers=bearer("read:todo_list"), timeout=10
    )
    assert reply.status_code == 405


def _post(stack: SecuredStack, headers: dict[str, str]) -> int:
    cookie = token("commands:todo_list")
    body = {"type": "add_todo", "payload": {"todo_id": "t", "text": "milk"}}
    with httpx.Client(base_url=stack.base, timeout=10, cookies={"ironstar_session": cookie}) as c:
        # As a proxy that rewrites Host to the upstream's name sends it on.
        sent = {"Host": "ironstar-gateway.internal", **headers}
        return c.post(f"/api/commands/todo_list/{unique()}", json=body, headers=sent).status_code


def test_a_cookie_post_from_the_public_origin_passes_when_the_proxy_rewrites_host(
    stack: SecuredStack,
) -> None:
    assert _post(stack, {"Origin": PUBLIC}) == 200


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://dashboard.example.org",  # another scheme is another origin
        "https://dashboard.example.org:8443",
        "https://dashboard.example.org.evil.example",
        "https://evil.example/https://dashboard.example.org",
        "null",
    ],
)
def test_a_cookie_post_from_any_other_origin_is_refused(stack: SecuredStack, origin: str) -> None:
    assert _post(stack, {"Origin": origin}) == 401


def test_a_cookie_post_with_neither_origin_nor_fetch_metadata_is_refused(
    stack: SecuredStack,
) -> None:
    assert _post(stack, {}) == 401


def _cookie_post(base: str, headers: dict[str, str]) -> int:
    body = {"type": "add_todo", "payload": {"todo_id": "t", "text": "milk"}}
    cookies = {"ironstar_session": token("commands:todo_list")}
    with httpx.Client(base_url=base, timeout=10, cookies=cookies) as client:
        return client.post(
            f"/api/commands/todo_list/{unique()}", json=body, headers=headers
        ).status_code


def test_a_cookie_post_naming_the_host_passes_only_with_the_connections_scheme(
    stack: SecuredStack,
) -> None:
    """Plain HTTP straight to the gateway: `Origin` must be `http://` + `Host`; the same
    host and port under https is another origin, whatever an untrusted peer forwards."""
    host = stack.base.removeprefix("http://")
    assert _cookie_post(stack.base, {"Origin": f"http://{host}"}) == 200
    assert _cookie_post(stack.base, {"Origin": f"HTTP://{host.upper()}"}) == 200
    assert _cookie_post(stack.base, {"Origin": f"https://{host}"}) == 401
    forged = {"Origin": f"https://{host}", "X-Forwarded-Proto": "https"}
    assert _cookie_post(stack.base, forged) == 401  # 127.0.0.1 is no trusted proxy here


@pytest.fixture(scope="module")
def forwarding(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredStack]:
    """A gateway behind a proxy it trusts (127.0.0.1) that rewrites `Host`, no public origin."""
    workdir = tmp_path_factory.mktemp("forwarded")
    with running(nats_server, workdir, IRONSTAR_GATEWAY_TRUSTED_PROXIES="127.0.0.1") as up:
        yield up


@pytest.mark.parametrize(
    ("proto", "origin", "status"),
    [
        ("https", "https://internal-gw.local", 200),
        ("https", "http://internal-gw.local", 401),  # the proxy's side is not the browser's
        ("https", "https://internal-gw.local:80", 401),
        ("http", "https://internal-gw.local", 401),
        ("http", "http://internal-gw.local", 200),
    ],
)
def test_behind_a_trusted_proxy_the_forwarded_scheme_is_the_requests_scheme(
    forwarding: SecuredStack, proto: str, origin: str, status: int
) -> None:
    headers = {"Host": "internal-gw.local", "X-Forwarded-Proto": proto, "Origin": origin}
    assert _cookie_post(forwarding.base, headers) == status


@pytest.mark.parametrize("value", ["*", "nginx.internal", "10.0.0.0/33", "127.0.0.1;rm"])
def test_trusted_proxies_must_be_addresses_or_networks(value: str) -> None:
    with pytest.raises(Invalid, match="TRUSTED_PROXIES"):
        GatewaySettings.from_env({"IRONSTAR_GATEWAY_TRUSTED_PROXIES": value})


@pytest.mark.parametrize(
    "value", ["dashboard.example.org", "https://x.org/app", "ftp://x.org", "https://u@x.org"]
)
def test_the_public_origin_must_be_an_origin(value: str) -> None:
    with pytest.raises(Invalid, match="PUBLIC_ORIGIN"):
        GatewaySettings.from_env({"IRONSTAR_GATEWAY_PUBLIC_ORIGIN": value})


def test_the_public_origin_is_compared_as_a_browser_writes_it() -> None:
    assert origin_of("HTTPS://Dashboard.Example.org:443/") == PUBLIC
    assert origin_of("http://[::1]:8080") == "http://[::1]:8080"


def test_a_gateway_with_a_bad_proxy_setting_does_not_start() -> None:
    done = run_cli({"IRONSTAR_GATEWAY_TRUSTED_PROXIES": "*"}, "gateway")
    assert done.returncode != 0
    assert "TRUSTED_PROXIES" in done.stderr + done.stdout


def test_trusted_ipv4_proxies_are_trusted_as_a_dual_stack_socket_sees_them_too() -> None:
    networks = [ipaddress.ip_network(n) for n in proxy_networks("127.0.0.1, 10.0.0.0/8")]
    for peer in ("127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.9.8.7"):
        assert any(ipaddress.ip_address(peer) in n for n in networks), peer
    for peer in ("127.0.0.2", "::ffff:127.0.0.2", "::1", "11.0.0.1"):
        assert not any(ipaddress.ip_address(peer) in n for n in networks), peer

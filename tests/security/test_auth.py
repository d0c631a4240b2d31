"""Who gets in: tokens, scopes, topic grants, the session cookie, headers — over real HTTP."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ironstar.natsserver import NatsServer, free_port
from tests.support.processes import Service
from tests.support.secured import SECRET, SecuredStack, bearer, token, unique

pytestmark = pytest.mark.e2e


@pytest.fixture
async def http(stack: SecuredStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        yield client


def _add(todo: str = "t1") -> dict[str, object]:
    return {"type": "add_todo", "payload": {"todo_id": todo, "text": "buy milk"}}


async def test_request_without_a_token_is_refused_with_401(http: httpx.AsyncClient) -> None:
    reply = await http.post(f"/api/commands/todo_list/{unique()}", json=_add())
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.json()["error"] == "unauthorized"
    assert "Authorization: Bearer" in reply.json()["message"]


async def test_expired_token_is_refused_with_401(http: httpx.AsyncClient) -> None:
    expired = token("commands:todo_list", ttl_s=-3600)
    reply = await http.post(
        f"/api/commands/todo_list/{unique()}",
        json=_add(),
        headers={"Authorization": f"Bearer {expired}"},
    )
    assert reply.status_code == 401
    assert "expired" in reply.json()["message"]


async def test_wrongly_signed_token_is_refused_with_401(http: httpx.AsyncClient) -> None:
    forged = token("admin", secret="another-secret-another-secret-another-secret")
    reply = await http.get("/api/users", headers={"Authorization": f"Bearer {forged}"})
    assert reply.status_code == 401
    assert "signature" in reply.json()["message"]


async def test_unsigned_alg_none_token_is_refused_with_401(http: httpx.AsyncClient) -> None:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    unsigned = f"{part({'alg': 'none'})}.{part({'sub': 'x', 'scope': 'admin', 'exp': 2**40})}."
    reply = await http.get("/api/users", headers={"Authorization": f"Bearer {unsigned}"})
    assert reply.status_code == 401


async def test_token_without_the_aggregate_scope_cannot_send_its_commands(
    http: httpx.AsyncClient,
) -> None:
    headers = bearer("commands:user_profile", "read:todo_list")
    reply = await http.post(f"/api/commands/todo_list/{unique()}", json=_add(), headers=headers)
    assert reply.status_code == 403
    assert reply.json()["scope"] == "commands:todo_list"


async def test_command_scope_lets_the_command_through(http: httpx.AsyncClient) -> None:
    list_id = unique()
    headers = bearer("commands:todo_list", "read:todo_list", subject="alice")
    reply = await http.post(f"/api/commands/todo_list/{list_id}", json=_add(), headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["events"][0]["metadata"]["actor"] == "alice"  # who, for the audit
    sequence = reply.json()["sequence"]
    read = await http.get(
        f"/api/todo-lists/{list_id}", params={"min_seq": sequence}, headers=headers
    )
    assert read.status_code == 200, read.text


async def test_read_grant_of_one_aggregate_does_not_read_another(http: httpx.AsyncClient) -> None:
    headers = bearer("read:todo_list:mine")
    assert (await http.get("/api/todo-lists/theirs", headers=headers)).status_code == 403
    assert (await http.get("/api/users", headers=headers)).status_code == 403
    assert (
        await http.post("/api/sql", json={"sql": "SELECT 1"}, headers=headers)
    ).status_code == 403


async def test_feed_filter_outside_the_grant_is_403_not_narrowed(http: httpx.AsyncClient) -> None:
    headers = bearer("read:todo_list:mine")
    for topics in ("todo_list:mine,user_profile", "todo_list", None):
        params = {"topics": topics} if topics else {}
        async with http.stream("GET", "/api/events", params=params, headers=headers) as reply:
            assert reply.status_code == 403, topics
    twice = [("topics", "todo_list:mine"), ("topics", "user_profile")]
    async with http.stream("GET", "/api/events", params=twice, headers=headers) as reply:
        assert reply.status_code == 400  # never checked on one value and served another
    params = {"topics": "todo_list:mine"}
    async with http.stream("GET", "/api/events", params=params, headers=headers) as reply:
        assert reply.status_code == 200


async def test_session_cookie_opens_the_feed_for_a_browser(stack: SecuredStack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as browser:
        opened = await browser.post("/api/session", headers=bearer("read:todo_list"))
        assert opened.status_code == 200, opened.text
        cookie = opened.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
        browser.cookies.set("ironstar_session", opened.cookies["ironstar_session"])
        params = {"topics": "todo_list"}
        async with browser.stream("GET", "/api/events", params=params) as reply:
            assert reply.status_code == 200
        closed = await browser.delete("/api/session")
        assert closed.status_code == 200
        assert "max-age=0" in closed.headers["set-cookie"].lower()


async def test_session_cookie_is_not_honoured_for_a_cross_site_command(stack: SecuredStack) -> None:
    cookie = token("commands:todo_list")
    async with httpx.AsyncClient(
        base_url=stack.base, timeout=10, cookies={"ironstar_session": cookie}
    ) as browser:
        reply = await browser.post(
            f"/api/commands/todo_list/{unique()}",
            json=_add(),
            headers={"Origin": "https://evil.example"},
        )
        assert reply.status_code == 401
        same_site = await browser.post(
            f"/api/commands/todo_list/{unique()}",
            json=_add(),
            headers={"Origin": stack.base},
        )
        assert same_site.status_code == 200, same_site.text


async def test_token_in_the_url_is_refused_with_400(http: httpx.AsyncClient) -> None:
    reply = await http.get("/api/events", params={"access_token": token("admin")})
    assert reply.status_code == 400
    assert "never accepted in the URL" in reply.json()["message"]


async def test_metrics_need_the_admin_scope(http: httpx.AsyncClient) -> None:
    assert (await http.get("/metrics", headers=bearer("read:*"))).status_code == 403
    assert (await http.get("/metrics", headers=bearer("admin"))).status_code == 200
    assert (await http.get("/healthz")).status_code == 200


async def test_security_headers_are_on_every_response(http: httpx.AsyncClient) -> None:
    for path in ("/", "/healthz", "/api/users", "/no-such-page"):
        reply = await http.get(path)
        assert reply.headers["x-content-type-options"] == "nosniff", path
        assert reply.headers["x-frame-options"] == "DENY", path
        assert reply.headers["referrer-policy"] == "no-referrer", path
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"], path
    page = (await http.get("/")).headers["content-security-policy"]
    assert "default-src 'self'" in page and "'unsafe-inline'" not in page
    assert "'unsafe-eval'" not in page  # the built-in Datastar script evaluates nothing


async def test_cors_is_off_by_default(http: httpx.AsyncClient) -> None:
    reply = await http.get("/healthz", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in reply.headers
    preflight = await http.options(
        "/api/users",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_allows_only_the_configured_origins(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    env = {
        "IRONSTAR_NATS_URL": nats_server.url,
        "IRONSTAR_GATEWAY_PORT": str(free_port()),
        "IRONSTAR_AUTH_CORS_ORIGINS": "https://dash.example.com",
    }
    gateway = Service("gateway", env, tmp_path).start()
    try:
        base = f"http://127.0.0.1:{env['IRONSTAR_GATEWAY_PORT']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for origin, allowed in (
                ("https://dash.example.com", True),
                ("https://x.example", False),
            ):
                reply = await client.options(
                    "/api/users",
                    headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
                )
                assert ("access-control-allow-origin" in reply.headers) is allowed, origin
    finally:
        gateway.stop()


def _gateway(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ironstar", "gateway", "--ready-file", str(tmp_path / "ready")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_gateway_refuses_a_non_loopback_address_without_auth(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    import os

    env = {**os.environ, "IRONSTAR_NATS_URL": nats_server.url}
    env.update(IRONSTAR_GATEWAY_HOST="0.0.0.0", IRONSTAR_GATEWAY_PORT=str(free_port()))
    env.pop("IRONSTAR_AUTH_SECRET", None)
    done = _gateway(env, tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("gateway: refusing to listen on 0.0.0.0 without authentication")
    assert not (tmp_path / "ready").exists()
    env["IRONSTAR_AUTH_SECRET"] = "short"
    done = _gateway(env, tmp_path)
    assert done.returncode == 1 and "at least 32 bytes" in done.stderr
    assert SECRET  # the module's secret is long enough; this one is not

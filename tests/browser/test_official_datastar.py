"""The dashboard with the official Datastar 1.0.1 bundle instead of the built-in client.

No package registry serves the pristine 1.0.1 bundle (npm has 1.0.0-beta.11 at most). The
`starhtml` wheel on PyPI ships Datastar v1.0.1 as `starhtml/static/js/datastar-core.js`,
patched by starhtml (a shadow-DOM scan and a race fix, neither on the paths the page uses).
The test downloads that wheel without installing it (it needs Python >= 3.12), takes the
file, checks its hash, and serves it from a local server (no CDN), as
`IRONSTAR_GATEWAY_DATASTAR_URL` would point at a team's own copy.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from ironstar.natsserver import free_port
from tests.support.processes import Service
from tests.support.stack import Stack, send

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WHEEL = "starhtml==0.7.0"
MEMBER = "starhtml/static/js/datastar-core.js"
SHA256 = "31c8c9efb895beadeba5f73407c3ca60201dee321c5dea56c182817b475bde9f"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Datastar v1.0.1 as the starhtml wheel ships it (downloaded, never installed)."""
    where = tmp_path_factory.mktemp("starhtml")
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--dest", str(where), WHEEL],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    wheels = list(where.glob("starhtml-*.whl"))
    if got.returncode != 0 or not wheels:
        reason = f"cannot download {WHEEL} from PyPI: {got.stderr.strip()[-300:]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    code = zipfile.ZipFile(wheels[0]).read(MEMBER)
    assert hashlib.sha256(code).hexdigest() == SHA256, "the wheel's Datastar bundle changed"
    assert b"Datastar v1.0.1" in code
    return code


@pytest.fixture(scope="module")
def bundle_url(bundle: bytes) -> Iterator[str]:
    """The bundle served from another local origin, with CORS (module scripts need it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(bundle)))
            self.end_headers()
            self.wfile.write(bundle)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/datastar.js"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def official(service_env: dict[str, str], tmp_path: Path, bundle_url: str) -> Iterator[Stack]:
    running = Stack({**service_env, "IRONSTAR_GATEWAY_DATASTAR_URL": bundle_url}, tmp_path)
    yield running
    running.stop()


@pytest.fixture(params=["lite", "official"])
def either(
    request: pytest.FixtureRequest, service_env: dict[str, str], tmp_path: Path
) -> Iterator[Stack]:
    """The stack with the built-in client, then with the official bundle."""
    env = dict(service_env)
    if request.param == "official":
        env["IRONSTAR_GATEWAY_DATASTAR_URL"] = request.getfixturevalue("bundle_url")
    running = Stack(env, tmp_path)
    yield running
    running.stop()


def _live(page: Page) -> None:
    expect(page.locator("#connection")).to_have_text("live", timeout=15_000)


def _page(stack: Stack, open_page: Callable[[str], Page]) -> tuple[str, Page]:
    list_id = f"ds{uuid.uuid4().hex[:8]}"
    page = open_page(f"{stack.url}/?list={list_id}")
    _live(page)
    assert page.evaluate("document.body.dataset.mode") == "datastar"
    return list_id, page


def test_the_official_bundle_applies_live_updates_and_signals(
    official: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id, page = _page(official, open_page)
    page.fill("#new-todo", "Through the official bundle")
    page.press("#new-todo", "Enter")
    item = page.locator(f"#todos-{list_id} .todo", has_text="Through the official bundle")
    expect(item).to_have_count(1)
    reply = send(official.url, "todo_list", list_id, "complete_todo", {"todo_id": _id(item)})
    expect(item.locator(".toggle")).to_be_checked()
    expect(page.locator("#seq")).to_have_text(str(reply["sequence"]))  # data-text="$seq"
    expect(page.locator("#events li")).to_have_count(2)


def _id(item: Locator) -> str:
    todo = item.get_attribute("data-todo")
    assert todo is not None
    return todo


def test_the_official_bundle_page_reconnects_after_the_gateway_ends_its_streams(
    official: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id, page = _page(official, open_page)
    official.command(list_id, "add_todo", todo_id="a", text="Before the restart")
    expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(1)
    official.gateway.stop()  # SIGTERM: the gateway ends every stream with a retry hint
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    other_env = {**official.env, "IRONSTAR_GATEWAY_PORT": str(free_port())}
    other = Service("gateway", other_env, official.workdir).start()
    other_url = f"http://127.0.0.1:{other_env['IRONSTAR_GATEWAY_PORT']}"
    send(other_url, "todo_list", list_id, "add_todo", {"todo_id": "b", "text": "While away"})
    other.stop()
    official.restart_gateway_after_stop()
    _live(page)
    expect(page.locator(f"#todos-{list_id} .todo .text")).to_have_text(
        ["Before the restart", "While away"], timeout=10_000
    )
    expect(page.locator("#events li")).to_have_count(2)


def test_an_unresumable_position_brings_a_snapshot_that_replaces_stale_todos(
    either: Stack, open_page: Callable[[str], Page], browser: BrowserContext
) -> None:
    official = either
    list_id = f"ds{uuid.uuid4().hex[:8]}"
    for i in range(3):
        official.command(list_id, "add_todo", todo_id=f"t{i}", text=f"Real {i}")

    # The page as a browser would hold it from before the stream was replaced: todos the
    # read model no longer has, and a position the stream never reached.
    stale_items = "".join(
        f'<li id="todo-s{i}" class="todo"><span class="text">Stale {i}</span></li>'
        for i in range(5)
    )
    browser.add_init_script(
        f"""document.addEventListener("readystatechange", () => {{
          const list = document.getElementById("todos-{list_id}");
          if (document.readyState !== "interactive" || !list) return;
          list.insertAdjacentHTML("beforeend", {stale_items!r});
          const body = document.body;
          body.dataset.feed = body.dataset.feed.replace(/last_event_id=\\d+/,
                                                        "last_event_id=987654321");
        }});"""
    )
    page = open_page(f"{official.url}/?list={list_id}")
    _live(page)
    assert "last_event_id=987654321" in page.evaluate("document.body.dataset.feed")
    expect(page.locator(f"#todos-{list_id} .todo .text")).to_have_text(
        ["Real 0", "Real 1", "Real 2"], timeout=10_000
    )
    official.command(list_id, "add_todo", todo_id="t3", text="Real 3")
    expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(4)


def test_the_official_bundle_page_says_it_is_lagging_and_caps_its_event_log(
    official: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id, page = _page(official, open_page)
    page.evaluate(
        """() => { window.states = [];
        new MutationObserver(() => window.states.push(document.querySelector('#connection')
            .textContent)).observe(document.querySelector('#connection'), {childList: true}); }"""
    )
    assert official.gateway.process is not None
    other_env = {**official.env, "IRONSTAR_GATEWAY_PORT": str(free_port())}
    other = Service("gateway", other_env, official.workdir).start()
    official.gateway.process.send_signal(signal.SIGSTOP)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{other_env['IRONSTAR_GATEWAY_PORT']}") as c:
            for i in range(60):
                body = {"type": "add_todo", "payload": {"todo_id": f"t{i}", "text": f"Todo {i}"}}
                assert c.post(f"/api/commands/todo_list/{list_id}", json=body).status_code == 200
    finally:
        official.gateway.process.send_signal(signal.SIGCONT)
        other.stop()
    expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(60, timeout=10_000)
    expect(page.locator("#connection")).to_have_text("live")
    lagging = [s for s in page.evaluate("window.states") if s.startswith("lagging")]
    assert lagging and 10 <= int(lagging[0].split()[1]) < 60
    expect(page.locator("#events li")).to_have_count(50)

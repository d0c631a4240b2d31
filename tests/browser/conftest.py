"""A real chromium (Debian's, driven by Playwright) against the services as real processes.

Without /usr/bin/chromium the browser tests skip with the reason; under CI (CI=true) they
fail instead, because `.ci/run` installs chromium and they must run there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, sync_playwright

from ironstar.natsserver import free_port
from tests.support.stack import Stack

CHROMIUM = Path(os.environ.get("IRONSTAR_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One headless chromium with a fresh profile per module (not per session: Playwright's
    sync API keeps its own event loop, which must be gone before the async tests run);
    each test opens its own pages."""
    if not CHROMIUM.exists():
        reason = f"no chromium at {CHROMIUM}: apt-get install -y chromium (CI installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests must run in CI, but {reason}")
        pytest.skip(reason)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def _unexpected(message: ConsoleMessage) -> bool:
    """A console error or warning (the official Datastar bundle warns of a patch whose target
    is not on the page), except a request's failure (a 4xx the test provokes, a gateway
    down)."""
    return message.type in ("error", "warning") and "Failed to load resource" not in message.text


@pytest.fixture
def open_page(browser: BrowserContext) -> Iterator[Callable[..., Page]]:
    """Open a page (`init`: a script run before the page's own) and fail the test on any
    script error, console error or warning it logs."""
    pages: list[Page] = []
    errors: list[str] = []

    def open_(url: str, init: str | None = None) -> Page:
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on(
            "console", lambda m: errors.append(f"console: {m.text}") if _unexpected(m) else None
        )
        if init is not None:
            page.add_init_script(init)
        page.goto(url)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()
    assert not errors, errors


@pytest.fixture
def requests_seen(browser: BrowserContext) -> Iterator[list[str]]:
    """The path of every request the test's pages make, as chromium sends them (fetches and
    EventSource feeds alike), in order."""
    seen: list[str] = []

    def note(request: Request) -> None:
        seen.append(urlsplit(request.url).path)

    browser.on("request", note)
    yield seen
    browser.remove_listener("request", note)


# The official Datastar bundle. No package registry serves the pristine 1.0.1 bundle (npm
# has 1.0.0-beta.11 at most). The `starhtml` wheel on PyPI ships Datastar v1.0.1 as
# `datastar-core.js`, patched by starhtml (a shadow-DOM scan and a race fix, neither on the
# paths the page uses). It is downloaded without being installed (it needs Python >= 3.12),
# checked by hash and served from a local server (no CDN), as IRONSTAR_GATEWAY_DATASTAR_URL
# would point at a team's own copy.
WHEEL = "starhtml==0.7.0"
MEMBER = "starhtml/static/js/datastar-core.js"
SHA256 = "31c8c9efb895beadeba5f73407c3ca60201dee321c5dea56c182817b475bde9f"


def download_bundle(where: Path, *pip_options: str) -> bytes:
    """Datastar v1.0.1 out of the starhtml wheel, downloaded into `where` by this Python's
    pip (its index settings, plus `pip_options`). The wheel needs Python >= 3.12, so pip is
    told to pick it for 3.12 (a plain download on 3.11 finds "from versions: none").

    Skips when PyPI cannot be reached; fails instead under CI (CI=true), which must run it.
    """
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--dest", str(where), *pip_options, WHEEL],
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


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Datastar v1.0.1 as the starhtml wheel ships it (downloaded, never installed)."""
    return download_bundle(tmp_path_factory.mktemp("starhtml"))


@contextmanager
def _serving(status: int, body: bytes) -> Iterator[str]:
    """A local origin answering every GET `status` with `body` as JavaScript, with CORS
    (module scripts need it); its URL of a `datastar.js`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/datastar.js"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def bundle_url(bundle: bytes) -> Iterator[str]:
    """The bundle served from another local origin."""
    with _serving(200, bundle) as url:
        yield url


@pytest.fixture
def answers_404() -> Iterator[str]:
    """A bundle URL on an origin that answers 404 (a URL with a typo), with CORS."""
    with _serving(404, b"") as url:
        yield url


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

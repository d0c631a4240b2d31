"""A real chromium (Debian's, driven by Playwright) against the services as real processes.

Without /usr/bin/chromium the browser tests skip with the reason; under CI (CI=true) they
fail instead, because `.ci/run` installs chromium and they must run there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright

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
    """One headless chromium with a fresh profile; each test opens its own pages."""
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
    """A console error, except a request's failure (a 4xx the test provokes, a gateway down)."""
    return message.type == "error" and "Failed to load resource" not in message.text


@pytest.fixture
def open_page(browser: BrowserContext) -> Iterator[Callable[[str], Page]]:
    """Open a page and fail the test on any script error or console error it logs."""
    pages: list[Page] = []
    errors: list[str] = []

    def open_(url: str) -> Page:
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on(
            "console", lambda m: errors.append(f"console: {m.text}") if _unexpected(m) else None
        )
        page.goto(url)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()
    assert not errors, errors

"""The dashboard with the official Datastar 1.0.1 bundle instead of the built-in client
(the bundle: see `bundle` in tests/browser/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.support.stack import Stack, send

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def official(service_env: dict[str, str], tmp_path: Path, bundle_url: str) -> Iterator[Stack]:
    running = Stack({**service_env, "IRONSTAR_GATEWAY_DATASTAR_URL": bundle_url}, tmp_path)
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

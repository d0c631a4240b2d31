"""The dashboard with the official Datastar 1.0.1 bundle instead of the built-in client
(the bundle: see `bundle` in tests/browser/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from ironstar.natsserver import free_port
from tests.support.stack import Stack, send
from tests.support.waiting import until

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
    # A live view's answer is applied by the bundle too (an element patch of `ul#lists`).
    chip = page.locator("#lists li", has_text=list_id)
    expect(chip).to_contain_text("0 active")


def _id(item: Locator) -> str:
    todo = item.get_attribute("data-todo")
    assert todo is not None
    return todo


AHEAD = 999_999_999  # a position the stream never reached (another stream's, a stale tab's)


def _held_from_ahead(list_id: str) -> str:
    """A script that makes the page as a browser would hold it from before the stream was
    replaced (before the page's deferred scripts run): its feed resumes from a position
    ahead of the stream, and its list shows a todo the read model no longer has."""
    stale = '<li id="todo-stale" class="todo"><span class="text">Stale</span></li>'
    return f"""document.addEventListener("readystatechange", () => {{
      const list = document.getElementById("todos-{list_id}");
      if (document.readyState !== "interactive" || !list) return;
      list.insertAdjacentHTML("afterbegin", {stale!r});
      const body = document.body;
      body.dataset.feed = body.dataset.feed.replace(/last_event_id=\\d+/,
                                                    "last_event_id={AHEAD}");
    }});"""


@pytest.mark.parametrize("tabs", [1, 2])
def test_after_the_snapshot_for_an_ahead_position_later_events_are_applied(
    either: Stack, open_page: Callable[..., Page], tabs: int
) -> None:
    """Both clients, one tab and two sharing the feed: the snapshot replaces the stale list,
    and the feed goes on from the snapshot's position (the todo, its log line, `#seq`)."""
    list_id = f"ah{uuid.uuid4().hex[:8]}"
    either.command(list_id, "add_todo", todo_id="t0", text="Real 0")
    pages = [open_page(f"{either.url}/?list={list_id}", _held_from_ahead(list_id))
             for _ in range(tabs)]  # fmt: skip
    for page in pages:
        _live(page)
        assert f"last_event_id={AHEAD}" in page.evaluate("document.body.dataset.feed")
        expect(page.locator(f"#todos-{list_id} .todo .text")).to_have_text(
            ["Real 0"], timeout=10_000
        )
    # Another list's event first: the page shows it in the log, patches no list of its own,
    # and neither client logs an error for the list it does not show (open_page checks).
    either.command(f"{list_id}x", "add_todo", todo_id="o", text="Elsewhere")
    reply = either.command(list_id, "add_todo", todo_id="t1", text="Real 1")
    for page in pages:
        expect(page.locator(f"#todos-{list_id} .todo .text")).to_have_text(
            ["Real 0", "Real 1"], timeout=10_000
        )
        expect(page.locator("#events li")).to_have_count(2)
        expect(page.locator("#seq")).to_have_text(str(reply["sequence"]))
        expect(page.locator("#connection")).to_have_text("live")
        assert page.locator(f"#todos-{list_id}x").count() == 0


# Every text the header shows, in order, from before the page's own scripts run.
_HEADER_TEXTS = """window.headerTexts = [];
document.addEventListener("DOMContentLoaded", () => {
  const connection = document.getElementById("connection");
  const note = () => window.headerTexts.push(connection.textContent);
  note();
  new MutationObserver(note).observe(connection, {childList: true, characterData: true,
                                                  subtree: true});
});"""


@pytest.mark.parametrize("where", ["404", "refused"])
def test_a_page_whose_bundle_did_not_load_says_so_before_any_event_and_never_live(
    service_env: dict[str, str],
    tmp_path: Path,
    open_page: Callable[..., Page],
    answers_404: str,
    where: str,
) -> None:
    """A bundle that cannot load (a wrong URL, CORS, an address the browser blocks) leaves
    the events unapplied: the header says so at once, with no event, and never "live"."""
    nowhere = f"http://127.0.0.1:{free_port()}/datastar.js"  # nothing listens there
    url = answers_404 if where == "404" else nowhere
    stack = Stack({**service_env, "IRONSTAR_GATEWAY_DATASTAR_URL": url}, tmp_path)
    try:
        page = open_page(f"{stack.url}/?list=nb{uuid.uuid4().hex[:8]}", _HEADER_TEXTS)
        connection = page.locator("#connection")
        expect(connection).to_have_text(
            "not updating: the Datastar bundle did not load (see the console)"
        )
        # The feed connects meanwhile (its `connected` frame would have said "live"); the
        # header is watched for a few seconds of no events.
        page.wait_for_timeout(3_000)
        texts = page.evaluate("window.headerTexts")
        assert "live" not in texts, texts
        expect(connection).to_contain_text("the Datastar bundle did not load")
    finally:
        stack.stop()


def test_the_rendered_stream_position_shows_from_the_start_with_either_client(
    either: Stack, open_page: Callable[..., Page]
) -> None:
    """`#seq` shows the position the page was rendered at before any event arrives (the
    official bundle's `data-text` shows the `seq` signal, initialised by `data-signals`)."""
    list_id = f"sq{uuid.uuid4().hex[:8]}"
    sequence = either.command(list_id, "add_todo", todo_id="t", text="Counted")["sequence"]
    until(
        lambda: f'last_event_id={sequence}"' in _served(either.url, list_id),
        timeout=15,
        say=lambda: "the read models did not all reach the event",
    )
    page = open_page(f"{either.url}/?list={list_id}")
    _live(page)
    expect(page.locator("#seq")).to_have_text(str(sequence))
    expect(page.locator("#events li")).to_have_count(0)  # no event was applied


def _served(url: str, list_id: str) -> str:
    return httpx.get(f"{url}/?list={list_id}").text.replace("&amp;", "&")

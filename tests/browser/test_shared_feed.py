"""Many tabs, one feed: over HTTP/1.1 a browser opens six connections per origin at most, so
the dashboard's tabs share one feed (a leader tab, BroadcastChannel) instead of one each."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from ironstar.natsserver import free_port
from tests.support.nginx import behind_nginx
from tests.support.processes import Service
from tests.support.stack import Stack, send

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# Counts every event-log line a page ever inserts, by id: an event applied twice (even one
# swapped in place) is inserted twice.
COUNT_INSERTS = """
window.inserted = {};
new MutationObserver((records) => {
  for (const r of records) for (const n of r.addedNodes)
    if (n.id && n.id.startsWith("ev-")) window.inserted[n.id] = (window.inserted[n.id] || 0) + 1;
}).observe(document, { childList: true, subtree: true });
"""


def _live(page: Page) -> None:
    expect(page.locator("#connection")).to_have_text("live", timeout=15_000)


def _appending(stack: Stack, list_id: str, total: int) -> threading.Thread:
    """A thread adding todos "0".."total-1" to the list, one command after another."""

    def append() -> None:
        for i in range(total):
            send(stack.url, "todo_list", list_id, "add_todo", {"todo_id": f"t{i}", "text": f"{i}"})

    writer = threading.Thread(target=append)
    writer.start()
    return writer


def _gauge(gateway: str, name: str) -> float:
    metrics = httpx.get(f"{gateway}/metrics", timeout=5).text
    found = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    assert found, f"no {name} gauge"
    return float(found.group(1))


def test_eight_tabs_over_http1_through_nginx_are_all_live_on_one_shared_feed(
    service_env: dict[str, str], tmp_path: Path, open_page: Callable[..., Page]
) -> None:
    with behind_nginx(service_env, tmp_path) as (stack, proxy):
        list_id, other = f"tabs{uuid.uuid4().hex[:6]}", f"other{uuid.uuid4().hex[:6]}"
        pages = []
        for i in range(8):  # plain HTTP through nginx: HTTP/1.1, six connections at most
            shown = other if i % 2 else list_id  # pages of two lists share the same feeds
            pages.append(open_page(f"{proxy.http}/?list={shown}", COUNT_INSERTS))
            _live(pages[-1])
        # The eighth tab can still send commands (a seventh feed would have blocked fetch).
        pages[-1].fill("#new-todo", "From the eighth tab")
        pages[-1].press("#new-todo", "Enter")
        for page in pages[1::2]:
            expect(page.locator(f"#todos-{other} .todo .text")).to_have_text(
                ["From the eighth tab"], timeout=10_000
            )
        for page in pages:
            expect(page.locator("#events li")).to_have_count(1, timeout=10_000)
            # The live views' answers reach every tab: the chips of the list it changed.
            expect(page.locator("#lists li", has_text=other)).to_contain_text("1 active")
        assert _gauge(stack.url, "sse_connections") <= 2  # the leader's (+ a catch-up closing)
        # ... and one feed per live view (chart, totals, list chips) whatever the tabs and
        # their lists: at most 1 + 3 of the six connections.
        assert _gauge(stack.url, "live_subscriptions") <= 3


def test_when_the_leader_tab_closes_another_takes_over_without_loss_or_duplicates(
    either: Stack, open_page: Callable[..., Page]
) -> None:
    """With both Datastar clients (the official one would show a duplicate twice)."""
    stack = either
    list_id = f"hand{uuid.uuid4().hex[:6]}"
    pages = [open_page(f"{stack.url}/?list={list_id}", COUNT_INSERTS) for _ in range(3)]
    for page in pages:
        _live(page)
    total = 40

    writer = _appending(stack, list_id, total)
    expect(pages[1].locator(f"#todos-{list_id} .todo")).not_to_have_count(0, timeout=10_000)
    pages[0].close()  # the first tab took the lock: it leads
    writer.join(60)
    for page in pages[1:]:
        expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(total, timeout=15_000)
        # The live views passed to the new leader too: the chip counts every todo.
        chip = page.locator("#lists li", has_text=list_id)
        expect(chip).to_contain_text(f"{total} active", timeout=10_000)
        inserted: dict[str, int] = page.evaluate("window.inserted")
        assert len(inserted) == total, inserted
        assert set(inserted.values()) == {1}, {k: v for k, v in inserted.items() if v != 1}
        texts = page.locator(f"#todos-{list_id} .todo .text").all_text_contents()
        assert texts == [str(i) for i in range(total)]


def test_a_tab_opened_while_events_flow_catches_up_without_loss_or_duplicates(
    stack: Stack, open_page: Callable[..., Page]
) -> None:
    list_id = f"join{uuid.uuid4().hex[:6]}"
    leader = open_page(f"{stack.url}/?list={list_id}", COUNT_INSERTS)
    _live(leader)
    total = 60

    writer = _appending(stack, list_id, total)
    expect(leader.locator(f"#todos-{list_id} .todo")).not_to_have_count(0, timeout=10_000)
    late = open_page(f"{stack.url}/?list={list_id}", COUNT_INSERTS)  # rendered mid-flow
    writer.join(60)
    since = int(late.evaluate("new URL(document.body.dataset.feed, location).searchParams"
                              ".get('last_event_id') || 0"))  # fmt: skip
    for page in (leader, late):
        expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(total, timeout=15_000)
        texts = page.locator(f"#todos-{list_id} .todo .text").all_text_contents()
        assert texts == [str(i) for i in range(total)]
    inserted: dict[str, int] = late.evaluate("window.inserted")
    assert set(inserted.values()) == {1}, {k: v for k, v in inserted.items() if v != 1}
    last = max(int(k[3:]) for k in leader.evaluate("window.inserted"))
    assert sorted(int(k[3:]) for k in inserted) == list(range(since + 1, last + 1))


def test_tabs_behind_nginx_come_back_after_a_gateway_restart_with_each_event_once(
    service_env: dict[str, str], tmp_path: Path, open_page: Callable[..., Page]
) -> None:
    with behind_nginx(service_env, tmp_path) as (stack, proxy):
        list_id = f"back{uuid.uuid4().hex[:6]}"
        pages = [open_page(f"{proxy.http}/?list={list_id}", COUNT_INSERTS) for _ in range(3)]
        for page in pages:
            _live(page)
        stack.command(list_id, "add_todo", todo_id="a", text="Before")
        stack.gateway.stop()  # nginx answers the retry stanza meanwhile
        for page in pages:
            expect(page.locator("#connection")).to_have_text("reconnecting…", timeout=10_000)
        other_env = {**stack.env, "IRONSTAR_GATEWAY_PORT": str(free_port())}
        other = Service("gateway", other_env, stack.workdir).start()
        other_url = f"http://127.0.0.1:{other_env['IRONSTAR_GATEWAY_PORT']}"
        try:
            away = {"todo_id": "b", "text": "While away"}
            send(other_url, "todo_list", list_id, "add_todo", away)
        finally:
            other.stop()
        stack.restart_gateway_after_stop()
        stack.command(list_id, "add_todo", todo_id="c", text="After")
        for page in pages:
            _live(page)
            expect(page.locator(f"#todos-{list_id} .todo .text")).to_have_text(
                ["Before", "While away", "After"], timeout=15_000
            )
            inserted: dict[str, int] = page.evaluate("window.inserted")
            assert sorted(inserted) == ["ev-1", "ev-2", "ev-3"] and set(inserted.values()) == {1}

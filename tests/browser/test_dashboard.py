"""The dashboard in a real chromium: commands from the page, changes back over the feed."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, expect

from ironstar.natsserver import free_port
from tests.browser.conftest import ARTIFACTS
from tests.support.processes import Service
from tests.support.stack import Stack, send

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _list() -> str:
    return f"l{uuid.uuid4().hex[:8]}"


def _live(page: Page) -> None:
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)


def _fresh_list(stack: Stack, open_page: Callable[[str], Page]) -> tuple[str, Page]:
    """A new list's page, once its feed is live."""
    list_id = _list()
    page = open_page(f"{stack.url}/?list={list_id}")
    _live(page)
    return list_id, page


def _add(page: Page, text: str) -> None:
    page.fill("#new-todo", text)
    page.press("#new-todo", "Enter")


def test_empty_panels_say_so_and_clear_completed_waits_for_a_completed_todo(
    stack: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id, page = _fresh_list(stack, open_page)
    placeholder = page.evaluate(
        "id => getComputedStyle(document.getElementById(id), '::before').content",
        f"todos-{list_id}",
    )
    assert "No todos yet" in placeholder
    clear = page.locator("#clear-completed")
    expect(clear).to_be_disabled()
    _add(page, "Buy milk")
    item = page.locator(f"#todos-{list_id} .todo", has_text="Buy milk")
    expect(item).to_have_count(1)
    gone = page.evaluate(
        "id => getComputedStyle(document.getElementById(id), '::before').content",
        f"todos-{list_id}",
    )
    assert gone == "none"
    expect(clear).to_be_disabled()
    item.locator(".toggle").click()
    expect(clear).to_be_enabled()
    clear.click()
    expect(item).to_have_count(0)
    expect(clear).to_be_disabled()


def test_todos_are_added_completed_and_deleted_through_the_page(
    stack: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id, page = _fresh_list(stack, open_page)
    _add(page, "Buy milk")
    item = page.locator(f"#todos-{list_id} .todo", has_text="Buy milk")
    expect(item).to_have_count(1)
    expect(page.locator("#new-todo")).to_have_value("")

    item.locator(".toggle").focus()
    page.keyboard.press("Space")  # keyboard only; the live patch keeps the focus in place
    expect(page.locator("#events")).to_contain_text("todo_completed")
    expect(item.locator(".toggle")).to_be_checked()
    expect(item.locator(".toggle")).to_be_focused()
    state = httpx.get(f"{stack.url}/api/todo-lists/{list_id}?min_seq=2").json()["result"]
    assert [(i["text"], i["completed"]) for i in state["items"]] == [("Buy milk", True)]

    item.get_by_role("button", name="Delete").click()
    expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(0)
    expect(page.locator("#events")).to_contain_text("todo_deleted")


def test_a_second_page_on_the_same_list_sees_changes_within_a_second(
    stack: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id = _list()
    first = open_page(f"{stack.url}/?list={list_id}")
    second = open_page(f"{stack.url}/?list={list_id}")
    _live(first)
    _live(second)
    _add(first, "Shared todo")
    expect(second.locator(f"#todos-{list_id} .todo .text")).to_have_text(
        ["Shared todo"], timeout=1_000
    )
    second.locator(".todo .rename").click()
    second.fill(".todo .edit input", "Shared and renamed")
    second.press(".todo .edit input", "Enter")
    expect(first.locator(f"#todos-{list_id} .todo .text")).to_have_text(
        "Shared and renamed", timeout=1_000
    )


def test_the_page_reconnects_after_a_gateway_restart_and_catches_up_without_reload(
    either: Stack, open_page: Callable[[str], Page]
) -> None:
    """With both Datastar clients: the gateway's SIGTERM ends the streams, the page comes back."""
    stack = either
    list_id, page = _fresh_list(stack, open_page)
    _add(page, "Before the restart")
    expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(1)
    page.evaluate("window.sameDocument = true")

    stack.gateway.stop()
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    # While the page's gateway is down, another gateway takes a command.
    other_env = {**stack.env, "IRONSTAR_GATEWAY_PORT": str(free_port())}
    other = Service("gateway", other_env, stack.workdir).start()
    other_url = f"http://127.0.0.1:{other_env['IRONSTAR_GATEWAY_PORT']}"
    send(other_url, "todo_list", list_id, "add_todo", {"todo_id": "b", "text": "While away"})
    other.stop()
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    stack.restart_gateway_after_stop()

    expect(page.locator("#connection")).to_have_text("live", timeout=15_000)
    expect(page.locator(f"#todos-{list_id} .todo .text")).to_have_text(
        ["Before the restart", "While away"], timeout=10_000
    )
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"


def test_a_rejected_command_shows_the_servers_message_next_to_its_input(
    stack: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id, page = _fresh_list(stack, open_page)
    _add(page, "   ")
    error = page.locator("#add-todo-error")
    expect(error).to_contain_text("text")
    rejected = httpx.post(
        f"{stack.url}/api/commands/todo_list/{list_id}",
        json={"type": "add_todo", "payload": {"todo_id": "x", "text": "   "}},
    ).json()
    expect(error).to_have_text(rejected["message"])
    expect(page.locator("#new-todo")).to_have_attribute("aria-describedby", "add-todo-error")

    page.fill("#user-id", "bob")
    page.fill("#user-name", "Bob")
    page.get_by_role("button", name="Update").click()
    expect(page.locator("#user-error")).not_to_be_empty()
    _add(page, "Now it is fine")
    expect(error).to_be_hidden()

    page.fill("#sql", "DELETE FROM todos")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#sql-error")).to_contain_text("read-only SELECT")


def test_the_dashboard_renders_every_panel_and_is_saved_as_a_screenshot(
    stack: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id = "groceries"
    for i, text in enumerate(("Milk", "Sourdough", "Coffee beans", "Tomatoes")):
        stack.command(list_id, "add_todo", todo_id=f"t{i}", text=text)
    stack.command(list_id, "complete_todo", todo_id="t1")
    send(stack.url, "user_profile", "ada", "register_user", {"name": "Ada", "email": "a@b.org"})
    page = open_page(f"{stack.url}/?list={list_id}")
    _live(page)
    expect(page.locator("#todos-groceries .todo")).to_have_count(4, timeout=10_000)
    expect(page.locator("#users")).to_contain_text("Ada")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#sql-result table tbody tr")).not_to_have_count(0)
    page.fill("#user-id", "grace")
    page.fill("#user-name", "Grace Hopper")
    page.fill("#user-email", "grace@example.org")
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#user-grace .name")).to_have_text("Grace Hopper")
    expect(page.locator("#analytics .legend")).to_contain_text("user_registered 2", timeout=5_000)
    expect(page.locator("#analytics svg rect")).not_to_have_count(0)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways on a phone by {overflow}px"
    page.screenshot(path=ARTIFACTS / "dashboard-phone.png", full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_a_page_that_falls_behind_says_it_is_lagging_and_by_how_many_events(
    either: Stack, open_page: Callable[[str], Page]
) -> None:
    """With the built-in Datastar client and with the official bundle."""
    stack = either
    list_id, page = _fresh_list(stack, open_page)
    page.evaluate(
        """() => { window.states = [];
        new MutationObserver(() => window.states.push(document.querySelector('#connection')
            .textContent)).observe(document.querySelector('#connection'), {childList: true}); }"""
    )
    # The page's gateway is frozen while another one takes 60 commands: its consumer
    # falls 60 behind, and the page hears so from the first events it gets afterwards.
    assert stack.gateway.process is not None
    other_env = {**stack.env, "IRONSTAR_GATEWAY_PORT": str(free_port())}
    other = Service("gateway", other_env, stack.workdir).start()
    stack.gateway.process.send_signal(signal.SIGSTOP)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{other_env['IRONSTAR_GATEWAY_PORT']}") as c:
            for i in range(60):
                body = {"type": "add_todo", "payload": {"todo_id": f"t{i}", "text": f"Todo {i}"}}
                assert c.post(f"/api/commands/todo_list/{list_id}", json=body).status_code == 200
    finally:
        stack.gateway.process.send_signal(signal.SIGCONT)
        other.stop()
    expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(60, timeout=10_000)
    expect(page.locator("#connection")).to_have_text("live")
    states = page.evaluate("window.states")
    lagging = [s for s in states if s.startswith("lagging")]
    assert lagging, states
    assert 10 <= int(lagging[0].split()[1]) < 60
    expect(page.locator("#events li")).to_have_count(50)  # the event log keeps the last 50


LIVE_VIEWS = {"/ui/live/analytics/chart", "/ui/live/analytics/totals", "/ui/live/todos/lists"}


def test_what_a_new_user_notices_first_updates_live_and_reads_at_phone_width(
    stack: Stack, open_page: Callable[[str], Page], requests_seen: list[str]
) -> None:
    """The chips, the chart and the totals follow live queries: no fragment is fetched."""
    list_id, page = _fresh_list(stack, open_page)
    chart = page.evaluate("document.querySelector('#chart').innerHTML")
    # An empty live-events panel says what will appear there.
    placeholder = page.evaluate(
        "getComputedStyle(document.querySelector('#events'), '::before').content"
    )
    assert "events appear here" in placeholder, placeholder

    # The chips of the lists update live: a new list appears, a count changes.
    other = _list()
    send(stack.url, "todo_list", other, "add_todo", {"todo_id": "a", "text": "Elsewhere"})
    chip = page.locator("#lists li", has_text=other)
    expect(chip).to_contain_text("1 active", timeout=5_000)
    send(stack.url, "todo_list", other, "add_todo", {"todo_id": "b", "text": "Elsewhere too"})
    expect(chip).to_contain_text("2 active", timeout=5_000)
    expect(page.locator("#lists li", has_text=list_id)).to_have_count(0)  # nothing in it yet
    _add(page, "Mine")
    expect(page.locator("#lists li", has_text=list_id)).to_contain_text("1 active", timeout=5_000)
    current = page.locator("#lists a[aria-current=page]")  # the shared view, marked per page
    expect(current).to_have_text(list_id)

    # A new user appears at the top of the newest-first list.
    for user in ("first", "second"):
        send(stack.url, "user_profile", f"{user}-{list_id}", "register_user",
             {"name": user.title(), "email": f"{user}@example.org"})  # fmt: skip
    expect(page.locator("#users li").first).to_have_id(f"user-second-{list_id}", timeout=5_000)

    # The totals and the chart show every event: from the live answers, not a refetch.
    last = send(stack.url, "todo_list", other, "complete_todo", {"todo_id": "a"})["sequence"]
    totals = httpx.get(f"{stack.url}/api/read/stream/totals?min_seq={last}", timeout=10).json()
    events = page.locator("#totals dd").first
    expect(events).to_have_text(str(totals["result"]["events"]), timeout=5_000)
    page.wait_for_function("old => document.querySelector('#chart').innerHTML !== old", arg=chart)
    assert set(requests_seen) >= LIVE_VIEWS, requests_seen
    fetched = [p for p in requests_seen if p.startswith("/ui/") and p not in LIVE_VIEWS]
    assert not fetched, fetched

    # The chart's tick labels stay readable on a phone: at least 10 CSS pixels high.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#analytics svg rect")).not_to_have_count(0, timeout=5_000)
    heights = page.evaluate(
        "[...document.querySelectorAll('#analytics .tick')]"
        ".map(t => t.getBoundingClientRect().height)"
    )
    assert heights and min(heights) >= 10, heights
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard-first-hour-390.png", full_page=True)

"""Texts with line breaks on the dashboard in chromium, live and from a snapshot (issue 12,
item 1): every todo keeps its whole text and its buttons, and nothing after it is lost."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.support.stack import Stack, send

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TEXTS = ["one\rtwo", "three\nfour", "five\r\nsix", "sep\u2028arated", "a\r\rb", "last"]
NAMES = ["Ada\rLovelace", "Grace\r\nHopper", "Alan Turing"]


def _todos(page: Page, list_id: str) -> list[dict[str, object]]:
    return page.evaluate(  # type: ignore[no-any-return]
        """(list) => [...document.querySelectorAll(`#todos-${list} .todo`)].map((li) => ({
            text: li.querySelector(".text").textContent,
            buttons: li.querySelectorAll("button").length,
        }))""",
        list_id,
    )


def _expected(text: str) -> str:
    """The text as the DOM holds it: exactly what was sent (trimmed), a CR included
    (rendered as `&#13;`, which the HTML parser keeps, where a raw CR would become LF)."""
    return text.strip()


def test_todos_and_users_with_line_breaks_show_whole_live_and_after_a_snapshot(
    stack: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id = f"l{uuid.uuid4().hex[:8]}"
    page = open_page(f"{stack.url}/?list={list_id}")
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    users = [f"u{uuid.uuid4().hex[:8]}" for _ in NAMES]
    for user, name in zip(users, NAMES, strict=True):
        email = f"{user}@example.org"
        send(stack.url, "user_profile", user, "register_user", {"name": name, "email": email})
    for n, text in enumerate(TEXTS):
        stack.command(list_id, "add_todo", todo_id=f"t{n}", text=text)
    expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(len(TEXTS))
    want = [{"text": _expected(t), "buttons": 2} for t in TEXTS]
    assert _todos(page, list_id) == want
    for user in users:
        expect(page.locator(f"#user-{user}")).to_have_count(1)
    # An unresumable position: a second feed on the same page brings a snapshot, which
    # rebuilds the users from its fragments and makes the page reload the list.
    page.evaluate(
        """(list) => {
            document.querySelector("#users").innerHTML = "";
            document.querySelector(`#todos-${list}`).innerHTML = "";
            window.datastarLite.connect(
                "/api/events?format=datastar&topics=todo_list,user_profile&last_event_id=x",
                () => {},
            );
        }""",
        list_id,
    )
    expect(page.locator(f"#todos-{list_id} .todo")).to_have_count(len(TEXTS))
    assert _todos(page, list_id) == want
    for user, name in zip(users, NAMES, strict=True):
        expect(page.locator(f"#user-{user} .email")).to_have_text(f"{user}@example.org")
        shown = page.locator(f"#user-{user} .name").evaluate("e => e.textContent")
        assert shown == _expected(name)

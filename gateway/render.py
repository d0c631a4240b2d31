"""The dashboard's HTML fragments (pure): the same markup for the first page and the feed.

Every fragment a live event changes is addressable: a todo list is `ul#todos-<list>`, each
item `li#todo-<todo>` inside it with `.toggle` and `.text`; a user is `li#user-<id>` with
`.name`, `.email` and `.state`. Events address them by selector scoped to their list
(`#todos-groceries #todo-milk .text`), so ids never collide across lists and an event of a
list that is not on screen patches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any


def e(value: object) -> str:
    """Escape text and attribute values (quotes included).

    A CR becomes the character reference `&#13;`: the HTML parser would turn a raw one
    into LF, and the SSE framing would end a line there (the DOM keeps the reference's CR).
    """
    return escape(str(value), quote=True).replace("\r", "&#13;")


def todo_toggle(todo_id: str, completed: bool) -> str:
    checked = " checked" if completed else ""
    return (
        f'<input type="checkbox" class="toggle" aria-labelledby="text-{e(todo_id)}" '
        f'data-todo="{e(todo_id)}"{checked}>'
    )


def todo_text(todo_id: str, text: str) -> str:
    return f'<span class="text" id="text-{e(todo_id)}">{e(text)}</span>'


def todo_item(todo_id: str, text: str, completed: bool = False) -> str:
    t = e(todo_id)
    return (
        f'<li id="todo-{t}" class="todo" data-todo="{t}">'
        f"<label>{todo_toggle(todo_id, completed)}{todo_text(todo_id, text)}</label>"
        f'<button type="button" class="rename" data-todo="{t}" '
        f'aria-describedby="text-{t}">Rename</button>'
        f'<button type="button" class="delete" data-todo="{t}" '
        f'aria-describedby="text-{t}">Delete</button></li>'
    )


def todo_items(
    items: Iterable[Mapping[str, Any]], truncated: Mapping[str, Any] | None = None
) -> str:
    """The `<li>`s of the todos, after a note saying how many are shown when the read model
    cut the list to fit one answer (`truncated`: the reply's {"returned", "total", ...})."""
    return cut_note(truncated) + "".join(
        todo_item(i["todo_id"], i["text"], bool(i["completed"])) for i in items
    )


def cut_note(truncated: Mapping[str, Any] | None) -> str:
    """`<li class="note">showing 3,841 of 4,600 todos — ...</li>`, or "" when nothing is cut."""
    if not truncated:
        return ""
    return (
        f'<li class="note truncated" role="note">showing {int(truncated["returned"]):,} of '
        f"{int(truncated['total']):,} todos — the rest is too large for one answer</li>"
    )


def todo_list(
    list_id: str, items: Iterable[Mapping[str, Any]], truncated: Mapping[str, Any] | None = None
) -> str:
    return (
        f'<ul id="todos-{e(list_id)}" class="todo-list" aria-label="Todos of {e(list_id)}">'
        f"{todo_items(items, truncated)}</ul>"
    )


def lists(items: Iterable[Mapping[str, Any]], current: str) -> str:
    """`ul#lists`: a chip per list with its active count (the page reloads it as events come)."""
    return (
        f'<ul id="lists" class="lists" aria-label="Recent lists">{list_links(items, current)}</ul>'
    )


def list_links(lists: Iterable[Mapping[str, Any]], current: str) -> str:
    links = []
    for one in lists:
        lid = e(one["list_id"])
        here = ' aria-current="page"' if one["list_id"] == current else ""
        counts = f"{int(one.get('active') or 0)} active"
        links.append(f'<li><a href="/?list={lid}"{here}>{lid}</a> <small>{counts}</small></li>')
    return "".join(links)


def user_state(active: bool) -> str:
    return f'<span class="state">{"active" if active else "deactivated"}</span>'


def user_field(field: str, value: str) -> str:
    return f'<span class="{field}">{e(value)}</span>'


def user_item(user: Mapping[str, Any]) -> str:
    return (
        f'<li id="user-{e(user["user_id"])}" class="user"><code>{e(user["user_id"])}</code> '
        f"{user_field('name', user['name'])} "
        f"&lt;{user_field('email', user['email'])}&gt; "
        f"{user_state(bool(user.get('active', True)))}</li>"
    )


def users(items: Iterable[Mapping[str, Any]]) -> str:
    return "".join(user_item(u) for u in items)


def event_line(sequence: int, event_type: str, aggregate_type: str, aggregate_id: str) -> str:
    return (
        f'<li id="ev-{sequence}"><code>#{sequence}</code> {e(event_type)} '
        f"<small>{e(aggregate_type)}:{e(aggregate_id)}</small></li>"
    )


def skipped_line(sequence: int, reason: str) -> str:
    """The event log's line for an event the feed skipped (it could not be decoded)."""
    code = f"<code>#{sequence}</code>"
    return f'<li id="ev-{sequence}" class="skipped">{code} skipped: {e(reason)}</li>'

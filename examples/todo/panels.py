"""The example's dashboard panels: a todo list and the user profiles (pure HTML).

Every fragment a live event changes is addressable: a todo list is `ul#todos-<list>`, each
item `li#todo-<todo>` inside it with `.toggle` and `.text`; a user is `li#user-<id>` with
`.name`, `.email` and `.state`. Events address them by selector scoped to their list
(`#todos-groceries #todo-milk .text`), so ids never collide across lists and an event of a
list that is not on screen patches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from common.app import Ask, LiveView, Panel, Patch
from common.envelope import Envelope
from common.html import escape
from common.subjects import valid_id

DEFAULT_LIST = "inbox"


def todo_toggle(todo_id: str, completed: bool) -> str:
    checked = " checked" if completed else ""
    return (
        f'<input type="checkbox" class="toggle" aria-labelledby="text-{escape(todo_id)}" '
        f'data-todo="{escape(todo_id)}"{checked}>'
    )


def todo_text(todo_id: str, text: str) -> str:
    return f'<span class="text" id="text-{escape(todo_id)}">{escape(text)}</span>'


def todo_item(todo_id: str, text: str, completed: bool = False) -> str:
    t = escape(todo_id)
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


def todo_list(list_id: str, found: Mapping[str, Any] | None) -> str:
    """`ul#todos-<list>` of a `todo_lists/get` result (None: not answering, empty)."""
    items, cut = (found["items"], found.get("truncated")) if found else ([], None)
    return (
        f'<ul id="todos-{escape(list_id)}" class="todo-list" '
        f'aria-label="Todos of {escape(list_id)}">'
        f"{todo_items(items, cut)}</ul>"
    )


def lists(items: Iterable[Mapping[str, Any]], current: str | None) -> str:
    """`ul#lists`: a chip per list with its active count, kept current by the live query
    `todo_lists.lists` (`data-live`: the panel's `lists` live view). The view is the same
    for every page, so all tabs of a browser share one feed of it; `current` (marked
    `aria-current`) is the page's own: todo.js marks it again after each answer."""
    return (
        '<ul id="lists" class="lists" aria-label="Recent lists" data-live="/ui/live/todos/lists">'
        f"{list_links(items, current)}</ul>"
    )


def list_links(lists: Iterable[Mapping[str, Any]], current: str | None) -> str:
    links = []
    for one in lists:
        lid = escape(one["list_id"])
        here = ' aria-current="page"' if one["list_id"] == current else ""
        counts = f"{int(one.get('active') or 0)} active"
        links.append(f'<li><a href="/?list={lid}"{here}>{lid}</a> <small>{counts}</small></li>')
    return "".join(links)


def user_state(active: bool) -> str:
    return f'<span class="state">{"active" if active else "deactivated"}</span>'


def user_field(field: str, value: str) -> str:
    return f'<span class="{field}">{escape(value)}</span>'


def user_item(user: Mapping[str, Any]) -> str:
    return (
        f'<li id="user-{escape(user["user_id"])}" class="user">'
        f"<code>{escape(user['user_id'])}</code> "
        f"{user_field('name', user['name'])} "
        f"&lt;{user_field('email', user['email'])}&gt; "
        f"{user_state(bool(user.get('active', True)))}</li>"
    )


def users(items: Iterable[Mapping[str, Any]]) -> str:
    return "".join(user_item(u) for u in items)


def _unavailable(what: str) -> str:
    return f'<p class="note">The {what} read model is not answering yet; it appears live.</p>'


def chosen_list(params: Mapping[str, str]) -> str:
    """The page's `?list=`: an id, else 422 (a panel may refuse its parameters)."""
    return valid_id(params.get("list", DEFAULT_LIST), "list")


async def todos_panel(ask: Ask, params: Mapping[str, str]) -> str:
    list_id = chosen_list(params)
    todos = await ask("todo_lists", "get", {"list_id": list_id})
    found = await ask("todo_lists", "lists", {})
    lid = escape(list_id)
    return f"""<section class="panel todos" aria-labelledby="todos-heading" data-list="{lid}">
    <h2 id="todos-heading">Todos: <span class="list-name">{lid}</span></h2>
    <form id="pick-list" class="row" method="get" action="/">
      <label for="list-input">Open or create a list</label>
      <input id="list-input" name="list" value="{lid}" required maxlength="64"
             pattern="[A-Za-z0-9_\\-]{{1,64}}" title="letters, digits, - and _ (up to 64)">
      <button type="submit">Open</button>
    </form>
    {lists(found or [], list_id)}
    <form id="add-todo" class="row" data-command="add_todo">
      <label for="new-todo">What needs doing?</label>
      <input id="new-todo" name="text" autocomplete="off" placeholder="Buy milk"
             aria-describedby="add-todo-error">
      <button type="submit">Add</button>
      <p id="add-todo-error" class="error" role="alert"></p>
    </form>
    {"" if todos is not None else _unavailable("todo list")}
    {todo_list(list_id, todos)}
    <footer class="todo-footer">
      <span class="counts" aria-hidden="true"></span>
      <button type="button" id="clear-completed">Clear completed</button>
      <p id="list-error" class="error" role="alert"></p>
    </footer>
  </section>"""


async def users_panel(ask: Ask, params: Mapping[str, str]) -> str:
    found = await ask("user_profiles", "list", {})
    return f"""<section class="panel users" aria-labelledby="users-heading">
    <h2 id="users-heading">User profiles</h2>
    <form id="user-form" class="stack">
      <div class="field"><label for="user-id">User id</label>
        <input id="user-id" name="user_id" required maxlength="64" pattern="[A-Za-z0-9_\\-]{{1,64}}"
               placeholder="ada" aria-describedby="user-error"></div>
      <div class="field"><label for="user-name">Name</label>
        <input id="user-name" name="name" maxlength="200" placeholder="Ada Lovelace"></div>
      <div class="field"><label for="user-email">E-mail</label>
        <input id="user-email" name="email" type="email" placeholder="ada@example.org"></div>
      <div class="buttons">
        <button type="submit" name="type" value="register_user">Register</button>
        <button type="submit" name="type" value="update_profile">Update</button>
      </div>
      <p id="user-error" class="error" role="alert"></p>
    </form>
    {"" if found is not None else _unavailable("user profile")}
    <ul id="users" class="user-list" aria-label="Users">{users(found or [])}</ul>
  </section>"""


async def lists_fragment(ask: Ask, params: Mapping[str, str]) -> str:
    """`ul#lists` as it is now."""
    return lists(await ask("todo_lists", "lists", {}) or [], chosen_list(params))


LISTS_LIVE = LiveView(
    query=lambda params: ("todo_lists", "lists", {}),
    render=lambda result, _: lists(result or [], None),  # one for every page: shared
)


_TODO_EVENTS = frozenset(
    {"todo_added", "todo_renamed", "todo_completed", "todo_reopened", "todo_deleted"}
)


def todo_patches(sequence: int, event: Envelope) -> list[Patch]:
    if event.aggregate_type != "todo_list" or event.event_type not in _TODO_EVENTS:
        return []  # a type this gateway does not know (a rolling upgrade): the log line only
    scope = f"#todos-{event.aggregate_id}"
    todo = valid_id(event.payload.get("todo_id", ""), "todo_id")  # it becomes a selector
    item = f"{scope} #todo-{todo}"
    match event.event_type:
        case "todo_added":
            return [Patch(todo_item(todo, event.payload["text"]), scope, "append")]
        case "todo_renamed":
            return [Patch(todo_text(todo, event.payload["text"]), f"{item} .text")]
        case "todo_completed" | "todo_reopened":
            done = event.event_type == "todo_completed"
            return [Patch(todo_toggle(todo, done), f"{item} .toggle")]
    return [Patch(selector=item, mode="remove")]  # todo_deleted


def user_patches(sequence: int, event: Envelope) -> list[Patch]:
    if event.aggregate_type != "user_profile":
        return []
    user = f"#user-{event.aggregate_id}"
    match event.event_type:
        case "user_registered":
            row = {"user_id": event.aggregate_id, **event.payload}
            return [Patch(user_item(row), "#users", "prepend")]  # newest first
        case "profile_updated":
            return [
                Patch(user_field(field, value), f"{user} .{field}")
                for field, value in event.payload.items()
                if field in ("name", "email") and value
            ]
        case "user_deactivated":
            return [Patch(user_state(False), f"{user} .state")]
    return []


def todo_snapshot(topic: str, state: Any) -> list[Patch]:
    kind, _, ident = topic.partition(":")
    if kind == "todo_list" and ident and state is not None:
        return [
            Patch(todo_items(state["items"], state.get("truncated")), f"#todos-{ident}", "inner")
        ]
    return []


def user_snapshot(topic: str, state: Any) -> list[Patch]:
    kind, _, ident = topic.partition(":")
    if kind != "user_profile" or state is None:
        return []
    return [Patch(user_item(state))] if ident else [Patch(users(state), "#users", "inner")]


async def items_fragment(ask: Ask, params: Mapping[str, str]) -> str:
    """`ul#todos-<list>` as it is now."""
    list_id = chosen_list(params)
    found = await ask("todo_lists", "get", {"list_id": list_id})
    return todo_list(list_id, found)


def todo_topics(params: Mapping[str, str]) -> list[str]:
    """Every list's events, or (granted only one) the page's list's."""
    return ["todo_list", f"todo_list:{chosen_list(params)}"]


PANELS = (
    Panel(
        "todos",
        "Todos",
        todos_panel,
        todo_patches,
        todo_snapshot,
        {"lists": lists_fragment, "items": items_fragment},
        todo_topics,
        live={"lists": LISTS_LIVE},
    ),
    Panel(
        "users",
        "User profiles",
        users_panel,
        user_patches,
        user_snapshot,
        topics=lambda _: ["user_profile"],
    ),
)

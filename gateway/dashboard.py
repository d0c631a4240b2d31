"""`GET /`: the live dashboard, server-rendered, then patched live from the Datastar feed.

The page is rendered from the read models and tells its script the lowest sequence they
answered at; the script follows `GET /api/events?format=datastar` from there, so nothing
falls between the first render and the feed. A read model that cannot answer leaves its
panel with a note instead of failing the page. `/ui/*` serve single fragments the script
reloads (the chart, a list after a feed snapshot).

Every panel shows only what the caller's grants cover (`gateway/grants.py`: the same rule
as the API): a panel outside them says which grant it needs, the feed follows only the
granted topics, and a caller granted none of them gets the sign-in page instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Annotated, Any

from litestar import MediaType, Response, get
from litestar.params import Parameter
from litestar.static_files import create_static_files_router

from common.errors import Forbidden, IronstarError, Unauthorized
from common.subjects import valid_id
from gateway import chart, render
from gateway.backend import Backend
from gateway.grants import PRINCIPAL, may_read, read_grant, topic_grant

STATIC = Path(str(files("gateway").joinpath("static")))
_PAGE = Template((STATIC / "dashboard.html").read_text(encoding="utf-8"))
_SIGN_IN = (STATIC / "signin.html").read_bytes()
DEFAULT_LIST = "inbox"
CHART_MINUTES = 15


async def _ask(backend: Backend, projection: str, name: str, params: dict[str, Any]) -> Any:
    """(sequence, result) of a read-model query, or None when it cannot answer now. A result
    the read model cut to fit one answer carries the reply's `truncated`.

    401/403 (the caller may not see it) go through: a fragment answers them as they are.
    """
    try:
        reply = json.loads(await backend.query(projection, name, params, 0))
    except (Unauthorized, Forbidden):
        raise
    except IronstarError:
        return None
    result = reply["result"]
    if "truncated" in reply and isinstance(result, dict):  # cut to fit a message: say so
        result = {**result, "truncated": reply["truncated"]}
    return int(reply["sequence"]), result


def _unavailable(what: str) -> str:
    return f'<p class="note">The {what} read model is not answering yet; it appears live.</p>'


def _not_granted(projection: str, params: dict[str, Any]) -> str:
    grant = render.e(read_grant(projection, params))
    return f'<p class="note">Your sign-in does not grant <code>{grant}</code>.</p>'


def _feed_topics(list_id: str) -> list[str]:
    """The page's feed topics the caller may follow: all lists or this one, users."""
    may = PRINCIPAL.get().may
    topics = []
    if may(topic_grant("todo_list")):
        topics.append("todo_list")
    elif may(topic_grant("todo_list", list_id)):
        topics.append(f"todo_list:{list_id}")
    if may(topic_grant("user_profile")):
        topics.append("user_profile")
    return topics


async def _analytics(backend: Backend) -> tuple[str, list[int]]:
    if not may_read("analytics", {}):
        return f'<div id="analytics">{_not_granted("analytics", {})}</div>', []
    per_minute, totals = await asyncio.gather(
        _ask(backend, "analytics", "events_per_minute", {"minutes": CHART_MINUTES}),
        _ask(backend, "analytics", "totals", {}),
    )
    rows = per_minute[1] if per_minute else []
    seqs = [r[0] for r in (per_minute, totals) if r]
    return chart.panel(rows, totals[1] if totals else None, CHART_MINUTES), seqs


async def _granted(backend: Backend, projection: str, name: str, params: dict[str, Any]) -> Any:
    """`_ask`, or False when the caller may not see the answer (nothing is asked)."""
    if not may_read(projection, params):
        return False
    return await _ask(backend, projection, name, params)


@get("/", media_type=MediaType.HTML, include_in_schema=False)
async def page(
    backend: Backend, chosen: Annotated[str, Parameter(query="list")] = DEFAULT_LIST
) -> Response[Any]:
    """The dashboard: a todo list, user profiles, analytics, SQL and the live event log."""
    list_id = valid_id(chosen, "list")
    topics = _feed_topics(list_id)
    if not topics:  # nothing on this page is granted: not even which lists exist
        return Response(_SIGN_IN, media_type=MediaType.HTML)
    one = {"list_id": list_id}
    queries: list[Awaitable[Any]] = [
        _granted(backend, "todo_lists", "get", one),
        _granted(backend, "todo_lists", "lists", {}),
        _granted(backend, "user_profiles", "list", {}),
    ]
    todos, lists, users = await asyncio.gather(*queries)
    analytics, seqs = await _analytics(backend)
    seqs += [r[0] for r in (todos, lists, users) if r]
    url = backend.settings.datastar_url
    since = min(seqs) if seqs else None
    feed = f"/api/events?format=datastar&topics={','.join(topics)}"
    if since is not None:
        feed += f"&last_event_id={since}"
    return Response(
        _PAGE.substitute(
            list_id=render.e(list_id),
            todos=(
                render.todo_list(list_id, todos[1]["items"], todos[1].get("truncated"))
                if todos
                else render.todo_list(list_id, [])
            ),
            todos_note=(
                _not_granted("todo_lists", one)
                if todos is False
                else ("" if todos else _unavailable("todo list"))
            ),
            lists=render.lists(lists[1] if lists else [], list_id),
            users=render.users(users[1] if users else []),
            users_note=(
                _not_granted("user_profiles", {})
                if users is False
                else ("" if users else _unavailable("user profile"))
            ),
            analytics=analytics,
            seq="" if since is None else since,
            signals=render.e(json.dumps({"seq": "" if since is None else since})),
            feed=render.e(feed),
            mode="datastar" if url else "lite",
            datastar=(
                '<script src="/static/bundle-watch.js"></script>'
                f'<script type="module" id="datastar" src="{render.e(url)}"></script>'
                if url
                else '<script src="/static/datastar-lite.js" defer></script>'
            ),
        ),
        media_type=MediaType.HTML,
    )


@get("/ui/todos/{list_id:str}", media_type=MediaType.HTML, include_in_schema=False)
async def todos_fragment(backend: Backend, list_id: str) -> str:
    """`ul#todos-<list>` as it is now."""
    list_id = valid_id(list_id, "list_id")
    found = await _ask(backend, "todo_lists", "get", {"list_id": list_id})
    if not found:
        return render.todo_list(list_id, [])
    return render.todo_list(list_id, found[1]["items"], found[1].get("truncated"))


@get("/ui/lists", media_type=MediaType.HTML, include_in_schema=False)
async def lists_fragment(
    backend: Backend, chosen: Annotated[str, Parameter(query="list")] = DEFAULT_LIST
) -> str:
    """`ul#lists`: every list's chip with its active count, as it is now."""
    found = await _ask(backend, "todo_lists", "lists", {})
    return render.lists(found[1] if found else [], valid_id(chosen, "list"))


@get("/ui/analytics", media_type=MediaType.HTML, include_in_schema=False)
async def analytics_fragment(backend: Backend) -> str:
    """`div#analytics`: the chart and totals as they are now."""
    return (await _analytics(backend))[0]


static = create_static_files_router(
    path="/static", directories=[STATIC], include_in_schema=False, name="static"
)
ROUTES = (page, todos_fragment, lists_fragment, analytics_fragment, static)

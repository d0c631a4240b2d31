"""`GET /`: the live dashboard, server-rendered, then patched live from the Datastar feed.

The page is rendered from the read models and tells its script the lowest sequence they
answered at; the script follows `GET /api/events?format=datastar` from there, so nothing
falls between the first render and the feed. A read model that cannot answer leaves its
panel with a note instead of failing the page. `/ui/*` serve single fragments the script
reloads (the chart, a list after a feed snapshot).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Annotated, Any

from litestar import MediaType, get
from litestar.params import Parameter
from litestar.static_files import create_static_files_router

from common.errors import IronstarError
from common.subjects import valid_id
from gateway import chart, render
from gateway.backend import Backend

STATIC = Path(str(files("gateway").joinpath("static")))
_PAGE = Template((STATIC / "dashboard.html").read_text(encoding="utf-8"))
DEFAULT_LIST = "inbox"
FEED_TOPICS = "todo_list,user_profile"
CHART_MINUTES = 15


async def _ask(backend: Backend, projection: str, name: str, params: dict[str, Any]) -> Any:
    """(sequence, result) of a read-model query, or None when it cannot answer now."""
    try:
        reply = json.loads(await backend.query(projection, name, params, 0))
    except IronstarError:
        return None
    return int(reply["sequence"]), reply["result"]


def _unavailable(what: str) -> str:
    return f'<p class="note">The {what} read model is not answering yet; it appears live.</p>'


async def _analytics(backend: Backend) -> tuple[str, list[int]]:
    per_minute, totals = await asyncio.gather(
        _ask(backend, "analytics", "events_per_minute", {"minutes": CHART_MINUTES}),
        _ask(backend, "analytics", "totals", {}),
    )
    rows = per_minute[1] if per_minute else []
    seqs = [r[0] for r in (per_minute, totals) if r]
    return chart.panel(rows, totals[1] if totals else None, CHART_MINUTES), seqs


@get("/", media_type=MediaType.HTML, include_in_schema=False)
async def page(
    backend: Backend, chosen: Annotated[str, Parameter(query="list")] = DEFAULT_LIST
) -> str:
    """The dashboard: a todo list, user profiles, analytics, SQL and the live event log."""
    list_id = valid_id(chosen, "list")
    queries: list[Awaitable[Any]] = [
        _ask(backend, "todo_lists", "get", {"list_id": list_id}),
        _ask(backend, "todo_lists", "lists", {}),
        _ask(backend, "user_profiles", "list", {}),
    ]
    todos, lists, users = await asyncio.gather(*queries)
    analytics, seqs = await _analytics(backend)
    seqs += [r[0] for r in (todos, lists, users) if r]
    url = backend.settings.datastar_url
    since = min(seqs) if seqs else None
    feed = f"/api/events?format=datastar&topics={FEED_TOPICS}"
    if since is not None:
        feed += f"&last_event_id={since}"
    return _PAGE.substitute(
        list_id=render.e(list_id),
        todos=render.todo_list(list_id, todos[1]["items"] if todos else []),
        todos_note="" if todos else _unavailable("todo list"),
        lists=render.list_links(lists[1] if lists else [], list_id),
        users=render.users(users[1] if users else []),
        users_note="" if users else _unavailable("user profile"),
        analytics=analytics,
        seq="" if since is None else since,
        feed=render.e(feed),
        mode="datastar" if url else "lite",
        datastar=(
            f'<script type="module" src="{render.e(url)}"></script>'
            if url
            else '<script src="/static/datastar-lite.js" defer></script>'
        ),
    )


@get("/ui/todos/{list_id:str}", media_type=MediaType.HTML, include_in_schema=False)
async def todos_fragment(backend: Backend, list_id: str) -> str:
    """`ul#todos-<list>` as it is now."""
    list_id = valid_id(list_id, "list_id")
    found = await _ask(backend, "todo_lists", "get", {"list_id": list_id})
    return render.todo_list(list_id, found[1]["items"] if found else [])


@get("/ui/analytics", media_type=MediaType.HTML, include_in_schema=False)
async def analytics_fragment(backend: Backend) -> str:
    """`div#analytics`: the chart and totals as they are now."""
    return (await _analytics(backend))[0]


static = create_static_files_router(
    path="/static", directories=[STATIC], include_in_schema=False, name="static"
)
ROUTES = (page, todos_fragment, analytics_fragment, static)

"""`GET /`: the live dashboard, server-rendered, then patched live from the Datastar feed.

The page holds the app's panels (each renders itself from queries) beside the generic
parts: analytics chart and totals, the SQL box and the live event log. It is rendered from
the read models and tells its script the lowest sequence they
answered at; the script follows `GET /api/events?format=datastar` from there, so nothing
falls between the first render and the feed. A read model that cannot answer leaves its
panel with a note instead of failing the page. `/ui/*` serve single fragments the script
reloads (the chart, a panel after a feed snapshot).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from litestar import MediaType, Request, get
from litestar.static_files import create_static_files_router

from common import builtin, catalogue
from common.app import Ask, Panel
from common.errors import IronstarError, NotFound
from gateway import chart, render
from gateway.backend import Backend

STATIC = Path(str(files("gateway").joinpath("static")))
_PAGE = Template((STATIC / "dashboard.html").read_text(encoding="utf-8"))
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
        _ask(backend, builtin.NAME, "events_per_minute", {"minutes": CHART_MINUTES}),
        _ask(backend, builtin.NAME, "totals", {}),
    )
    rows = per_minute[1] if per_minute else []
    seqs = [r[0] for r in (per_minute, totals) if r]
    return chart.panel(rows, totals[1] if totals else None, CHART_MINUTES), seqs


def _asker(backend: Backend, seqs: list[int]) -> Ask:
    """What a panel asks with: a query's result, or None when it cannot answer now; the
    sequences answered at are collected in `seqs`."""

    async def ask(projection: str, name: str, params: Mapping[str, Any]) -> Any:
        found = await _ask(backend, projection, name, dict(params))
        if found is None:
            return None
        seqs.append(found[0])
        return found[1]

    return ask


async def _panel(panel: Panel, ask: Ask, params: Mapping[str, str]) -> str:
    inner = await panel.render(ask, params)
    return f'<div class="panel-slot" data-panel="{render.e(panel.name)}">{inner}</div>'


async def _panels(backend: Backend, params: Mapping[str, str], seqs: list[int]) -> str:
    panels = catalogue.current().app.panels
    ask = _asker(backend, seqs)
    return "\n".join(await asyncio.gather(*(_panel(p, ask, params) for p in panels)))


@get("/", media_type=MediaType.HTML, include_in_schema=False)
async def page(request: Request[Any, Any, Any], backend: Backend) -> str:
    """The dashboard: the app's panels, analytics, SQL and the live event log."""
    params = _params(request)
    seqs: list[int] = []
    panels = await _panels(backend, params, seqs)
    analytics, chart_seqs = await _analytics(backend)
    seqs += chart_seqs
    url = backend.settings.datastar_url
    since = min(seqs) if seqs else None
    topics = ",".join(sorted(catalogue.current().aggregates))
    feed = f"/api/events?format=datastar&topics={topics}"
    if since is not None:
        feed += f"&last_event_id={since}"
    return _PAGE.substitute(
        title=render.e(catalogue.current().app.name),
        panels=panels,
        analytics=analytics,
        seq="" if since is None else since,
        feed=render.e(feed),
        mode="datastar" if url else "lite",
        datastar=(
            f'<script type="module" src="{render.e(url)}"></script>'
            if url
            else '<script src="/static/datastar-lite.js" defer></script>'
        ),
        init=f" data-init=\"@get('{render.e(feed)}', {{openWhenHidden: true}})\"" if url else "",
    )


def _find(name: str) -> Panel:
    for panel in catalogue.current().app.panels:
        if panel.name == name:
            return panel
    raise NotFound(f"no panel {name[:80]!r}", field="name")


def _params(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if isinstance(v, str)}


@get("/ui/panels/{name:str}", media_type=MediaType.HTML, include_in_schema=False)
async def panel_fragment(request: Request[Any, Any, Any], backend: Backend, name: str) -> str:
    """One app panel as it is now (the page reloads them after a feed snapshot)."""
    return await _panel(_find(name), _asker(backend, []), _params(request))


@get("/ui/panels/{name:str}/{part:str}", media_type=MediaType.HTML, include_in_schema=False)
async def part_fragment(
    request: Request[Any, Any, Any], backend: Backend, name: str, part: str
) -> str:
    """A fragment of an app panel as it is now (elements with `data-refresh` ask it)."""
    fragment = _find(name).fragments.get(part)
    if fragment is None:
        raise NotFound(f"panel {name[:80]!r} has no fragment {part[:80]!r}", field="part")
    return await fragment(_asker(backend, []), _params(request))


@get("/ui/analytics", media_type=MediaType.HTML, include_in_schema=False)
async def analytics_fragment(backend: Backend) -> str:
    """`div#analytics`: the chart and totals as they are now."""
    return (await _analytics(backend))[0]


static = create_static_files_router(
    path="/static", directories=[STATIC], include_in_schema=False, name="static"
)
ROUTES = (page, panel_fragment, part_fragment, analytics_fragment, static)

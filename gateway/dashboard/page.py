"""`GET /`: the live dashboard, server-rendered, then patched live from the Datastar feed.

The page holds the app's panels (each renders itself from queries, `common.app.Panel`)
beside the generic parts: the events-per-minute chart and totals (the built-in `stream`
projection), the SQL box and the live event log. It is rendered from the read models and
tells its script the lowest sequence they answered at; the script follows
`GET /api/events?format=datastar` from there, so nothing falls between the first render
and the feed. A read model that cannot answer leaves a note instead of failing the page.
`/ui/*` serve single fragments (a panel the script reloads after a feed snapshot); the
chart, the totals and an app's `Panel.live` parts follow live queries
(`/ui/live/...`, `gateway/live/views.py`), for the views the caller may read (`data-views`).

Every panel shows only what the caller's grants cover (`gateway/security/grants.py`: the same rule
as the API): a query outside them is not asked and the panel says which grant it needs,
the feed follows only the granted topics, and a caller granted none of them gets the
sign-in page instead. A fragment whose every query is refused answers the 401/403.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.static_files import create_static_files_router

from common import builtin, catalogue
from common.app import Panel
from common.errors import Forbidden, IronstarError, NotFound, Unauthorized
from gateway.backend import Backend, Read
from gateway.dashboard import chart, render
from gateway.live import views as liveviews
from gateway.security.grants import PRINCIPAL, may_read, read_grant, topic_grant

STATIC = Path(str(files("gateway.dashboard").joinpath("static")))
_PAGE = Template((STATIC / "dashboard.html").read_text(encoding="utf-8"))
_SIGN_IN = (STATIC / "signin.html").read_bytes()
CHART_MINUTES = chart.MINUTES


async def _ask(backend: Backend, projection: str, name: str, params: dict[str, Any]) -> Read | None:
    """The answer of a read-model query (`Backend.read`), or None when it cannot
    answer now. 401/403 (the caller may not see it) go through: a fragment answers them."""
    try:
        return await backend.read(projection, name, params, 0)
    except (Unauthorized, Forbidden):
        raise
    except IronstarError:
        return None


def _unavailable(what: str) -> str:
    return f'<p class="note">The {what} read model is not answering yet; it appears live.</p>'


def _not_granted(grant: str) -> str:
    return f'<p class="note">Your sign-in does not grant <code>{render.escape(grant)}</code>.</p>'


class _Asker:
    """What a panel asks with: a query's result, or None when it cannot answer now or the
    caller may not see it (then nothing is asked, and the grant it needs is noted)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.seqs: list[int] = []
        self.denied: list[str] = []
        self.asked = 0

    async def __call__(self, projection: str, name: str, params: Mapping[str, Any]) -> Any:
        self.asked += 1
        values = dict(params)
        if not may_read(projection, values):
            self.denied.append(read_grant(projection, values, name))
            return None
        found = await _ask(self.backend, projection, name, values)
        if found is None:
            return None
        self.seqs.append(found.sequence)
        return found.result

    def notes(self) -> str:
        return "".join(_not_granted(grant) for grant in dict.fromkeys(self.denied))


async def _panel(panel: Panel, asker: _Asker, params: Mapping[str, str]) -> str:
    inner = await panel.render(asker, params)
    name = render.escape(panel.name)
    return f'<div class="panel-slot" data-panel="{name}">{asker.notes()}{inner}</div>'


def _feed_topics(params: Mapping[str, str]) -> list[str]:
    """The page's feed topics the caller may follow: each panel's (`Panel.topics`; every
    aggregate type when no panel names any), an id topic only when its type is not."""
    panels = catalogue.current().app.panels
    wanted = [t for p in panels if p.topics is not None for t in p.topics(params)]
    may = PRINCIPAL.get().may
    granted = [t for t in wanted or sorted(catalogue.current().aggregates) if may(_grant(t))]
    wide = {t for t in granted if ":" not in t}
    return list(dict.fromkeys(t for t in granted if t.partition(":")[0] not in wide or t in wide))


def _grant(topic: str) -> str:
    aggregate_type, _, ident = topic.partition(":")
    return topic_grant(aggregate_type, ident or None)


async def _analytics(backend: Backend) -> tuple[str, list[int]]:
    if not may_read(builtin.NAME, {}):
        grant = read_grant(builtin.NAME, {})
        return f'<div id="analytics">{_not_granted(grant)}</div>', []
    per_minute, totals = await asyncio.gather(
        _ask(backend, builtin.NAME, "events_per_minute", {"minutes": CHART_MINUTES}),
        _ask(backend, builtin.NAME, "totals", {}),
    )
    rows = per_minute.result if per_minute else []
    seqs = [read.sequence for read in (per_minute, totals) if read]
    return chart.panel(rows, totals.result if totals else None, CHART_MINUTES), seqs


def _params(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if isinstance(v, str)}


@get("/", media_type=MediaType.HTML, include_in_schema=False)
async def page(request: Request[Any, Any, Any], backend: Backend) -> Response[Any]:
    """The dashboard: the app's panels, analytics, SQL and the live event log."""
    params = _params(request)
    topics = _feed_topics(params)
    if not topics:  # nothing on this page is granted: not even which aggregates exist
        return Response(_SIGN_IN, media_type=MediaType.HTML)
    askers = [_Asker(backend) for _ in catalogue.current().app.panels]
    rendered = await asyncio.gather(
        *(_panel(p, a, params) for p, a in zip(catalogue.current().app.panels, askers, strict=True))
    )
    analytics, seqs = await _analytics(backend)
    seqs += [seq for asker in askers for seq in asker.seqs]
    url = backend.settings.datastar_url
    since = min(seqs) if seqs else None
    feed = f"/api/events?format=datastar&topics={','.join(topics)}"
    if since is not None:
        feed += f"&last_event_id={since}"
    return Response(
        _PAGE.substitute(
            title=render.escape(catalogue.current().app.name),
            scripts="".join(
                f'<script src="/app/{render.escape(name)}" defer></script>\n'
                for name in catalogue.current().app.scripts
            ),
            panels="\n".join(rendered),
            analytics=analytics,
            seq="" if since is None else since,
            signals=render.escape(json.dumps({"seq": "" if since is None else since})),
            feed=render.escape(feed),
            views=render.escape(" ".join(liveviews.granted(params))),
            mode="datastar" if url else "lite",
            datastar=(
                '<script src="/static/bundle-watch.js"></script>'
                f'<script type="module" id="datastar" src="{render.escape(url)}"></script>'
                if url
                else '<script src="/static/datastar-lite.js" defer></script>'
            ),
        ),
        media_type=MediaType.HTML,
    )


def _find(name: str) -> Panel:
    panels = catalogue.current().app.panels
    for panel in panels:
        if panel.name == name:
            return panel
    known = ", ".join(sorted(panel.name for panel in panels)) or "none"
    raise NotFound(f"no panel {name[:80]!r}; known: {known}", field="name")


def _refused(asker: _Asker) -> None:
    """A fragment whose every query was refused answers as the API would: 401 or 403."""
    if asker.asked and len(asker.denied) == asker.asked:
        PRINCIPAL.get().require(asker.denied[0])


@get("/ui/panels/{name:str}", media_type=MediaType.HTML, include_in_schema=False)
async def panel_fragment(request: Request[Any, Any, Any], backend: Backend, name: str) -> str:
    """One app panel as it is now (the page reloads them after a feed snapshot)."""
    asker = _Asker(backend)
    html = await _panel(_find(name), asker, _params(request))
    _refused(asker)
    return html


@get("/ui/panels/{name:str}/{part:str}", media_type=MediaType.HTML, include_in_schema=False)
async def part_fragment(
    request: Request[Any, Any, Any], backend: Backend, name: str, part: str
) -> str:
    """A fragment of an app panel as it is now (`Panel.fragments`); NotFound (404, listing
    the known ones) for a panel or part the app does not declare."""
    fragments = _find(name).fragments
    fragment = fragments.get(part)
    if fragment is None:
        known = ", ".join(sorted(fragments)) or "none"
        raise NotFound(
            f"panel {name[:80]!r} has no fragment {part[:80]!r}; known: {known}", field="part"
        )
    asker = _Asker(backend)
    html = await fragment(asker, _params(request))
    _refused(asker)
    return html


@get("/ui/analytics", media_type=MediaType.HTML, include_in_schema=False)
async def analytics_fragment(backend: Backend) -> str:
    """`div#analytics`: the chart and totals as they are now."""
    return (await _analytics(backend))[0]


static = create_static_files_router(
    path="/static", directories=[STATIC], include_in_schema=False, name="static"
)
ROUTES: tuple[Any, ...] = (
    page,
    panel_fragment,
    part_fragment,
    analytics_fragment,
    liveviews.live_view,
    static,
)


def routes() -> tuple[Any, ...]:
    """The dashboard's routes, with the app's assets at `/app/` when it has some."""
    assets = catalogue.current().app.assets
    if not assets:
        return ROUTES
    own = create_static_files_router(
        path="/app", directories=[Path(assets)], include_in_schema=False, name="app"
    )
    return (*ROUTES, own)

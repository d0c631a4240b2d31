"""`GET /ui/live/<panel>/<part>`: a part of the dashboard kept current by a live query.

Each view is one catalogue query and the HTML of its answer (`common.app.LiveView`): the
feed is `GET /api/live`'s (`gateway/live/follow.py`: one evaluation per distinct query, grants
checked on subscribing, resume by `Last-Event-ID`), each answer sent as one
`datastar-patch-elements` that replaces the view's element by its id, with `id:` the
answer's sequence. The HTML is rendered once per answer and page parameters, whatever the
number of browsers following it. The built-in `analytics` views are the chart and totals
(`gateway/chart.py`); an app's panels name theirs in `Panel.live`. The page follows each
element's `data-live` URL (shared between its tabs: `gateway/dashboard/static/feed.js`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Stream

from common import builtin, catalogue
from common.app import LiveView
from common.errors import NotFound
from gateway.backend import Backend, result_of
from gateway.dashboard import chart, datastar
from gateway.feed.wire import fields
from gateway.live.answer import Answer
from gateway.live.follow import follow, resume_point, target
from gateway.security.grants import may_read

ANALYTICS = {
    "chart": LiveView(
        query=lambda _: (builtin.NAME, "events_per_minute", {"minutes": str(chart.MINUTES)}),
        render=lambda rows, _: chart.chart_part(rows or [], chart.MINUTES),
    ),
    "totals": LiveView(
        query=lambda _: (builtin.NAME, "totals", {}),
        render=lambda result, _: chart.totals_part(result),
    ),
}
_RESUME = "last_event_id"
_json = msgspec.json.Encoder()


def view(panel: str, part: str) -> LiveView:
    """The live view `part` of `panel` (`analytics`: the built-in ones), or 404."""
    every = {"analytics": ANALYTICS} | {
        one.name: one.live for one in catalogue.current().app.panels
    }
    found = every.get(panel, {}).get(part)
    if found is None:
        known = ", ".join(f"{p}/{v}" for p, views in sorted(every.items()) for v in sorted(views))
        raise NotFound(
            f"no live view {panel[:80]!r}/{part[:80]!r}; known: {known or 'none'}", field="part"
        )
    return found


def granted(page: Mapping[str, str]) -> list[str]:
    """The live views (`panel/view`) the current principal may follow on a page with these
    parameters: the page follows only those (a refused feed would be retried forever)."""
    panels = [("analytics", ANALYTICS), *((p.name, p.live) for p in catalogue.current().app.panels)]
    found = []
    for panel, views in panels:
        for part, live in views.items():
            projection, _, strings = live.query(page)
            if may_read(projection, strings):
                found.append(f"{panel}/{part}")
    return found


def patcher(live: LiveView, page: Mapping[str, str]) -> Callable[[Answer], bytes]:
    """The render of `live`'s answers on a page with parameters `page`: one
    `datastar-patch-elements` frame of its HTML, `id:` the answer's sequence."""

    def render(answer: Answer) -> bytes:
        html = live.render(result_of(answer.body), page)
        return fields(datastar.patch_elements(html), "datastar-patch-elements", answer.sequence)

    return render


@get("/ui/live/{panel:str}/{part:str}", media_type="text/event-stream", include_in_schema=False)
async def live_view(
    request: Request[Any, Any, Any], backend: Backend, state: State, panel: str, part: str
) -> Stream:
    """The view's element, patched as its query's answer changes (401/403 as the query)."""
    live = view(panel, part)
    values = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
    page = {k: v for k, v in values.items() if k != _RESUME}
    live.render(None, page)  # page parameters it refuses are a 4xx now, not a broken stream
    projection, name, strings = live.query(page)
    query = target(f"{projection}.{name}", None, strings)
    style = f"view:{panel}/{part}:{_json.encode(sorted(page.items())).decode()}"
    after = resume_point(request.headers.get("last-event-id") or values.get(_RESUME))
    settings = backend.settings
    return await follow(
        backend,
        state,
        query,
        settings.live_interval_ms,
        (style, patcher(live, page)),
        after,
        owned=False,  # app-declared views: never counted against the principal's queries
    )

"""The analytics panel (pure): events per minute by type as a server-rendered SVG, from
the built-in `stream` projection (every app has it).

Stacked bars, one per minute of the window ending now (a quiet stretch shows as empty
minutes, not as a chart that stops at the last event); each event type has a fixed colour
and a legend entry with its total. Tick labels are sized for the chart's narrowest width
(a phone's 390 px scales the 600-unit viewBox down by half). The SVG carries a `<title>`
and `<desc>` so screen readers get the numbers, not just the picture.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from common import catalogue
from gateway.dashboard.render import escape

PALETTE = (
    "#2563eb", "#7c3aed", "#16a34a", "#ca8a04", "#dc2626", "#0891b2", "#db2777", "#57534e",
    "#9333ea", "#0d9488", "#ea580c", "#4f46e5",
)  # fmt: skip
_OTHER = "#94a3b8"
WIDTH, HEIGHT = 600, 200
MINUTES = 15  # the dashboard's window
LEFT, BOTTOM, TOP = 46, 30, 22  # room for the peak label, the time ticks and headroom


def colour(event_type: str) -> str:
    """A fixed colour per event type of the app (in the order of their names)."""
    known = sorted({t for a in catalogue.current().aggregates.values() for t in a.event_types})
    if event_type not in known:
        return _OTHER
    return PALETTE[known.index(event_type) % len(PALETTE)]


def _minute(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(second=0, microsecond=0)


def chart(rows: Iterable[Mapping[str, Any]], minutes: int = 15, now: datetime | None = None) -> str:
    """`events_per_minute` rows (`minute`, `event_type`, `events`) as an SVG bar chart of the
    `minutes` up to `now` (default: the current minute, UTC)."""
    counts: dict[datetime, dict[str, int]] = defaultdict(dict)
    for row in rows:
        counts[_minute(row["minute"])][row["event_type"]] = int(row["events"])
    if not counts:
        return (  # text, not SVG: it wraps at any width
            '<p class="chart chart-empty">No events yet: send a command, '
            "or run <code>ironstar demo</code></p>"
        )
    latest = max(counts)
    current = _minute(now or datetime.now(UTC))
    if latest.tzinfo is None:  # the read model's minutes are naive UTC
        current = current.replace(tzinfo=None)
    end = max(latest, current)
    window = [end - timedelta(minutes=minutes - 1 - i) for i in range(minutes)]
    peak = max(sum(counts.get(m, {}).values()) for m in window) or 1
    slot = (WIDTH - LEFT) / minutes
    base = HEIGHT - BOTTOM
    bars = []
    for i, moment in enumerate(window):
        y = float(base)
        for event_type, n in sorted(counts.get(moment, {}).items()):
            h = n / peak * (base - TOP)
            y -= h
            bars.append(
                f'<rect x="{LEFT + i * slot + 1:.1f}" y="{y:.1f}" width="{slot - 2:.1f}" '
                f'height="{h:.1f}" fill="{colour(event_type)}">'
                f"<title>{moment:%H:%M} {escape(event_type)}: {n}</title></rect>"
            )
    axis = (
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH}" y2="{base}" class="axis"/>'
        f'<text x="{LEFT}" y="{HEIGHT - 6}" class="tick">{window[0]:%H:%M}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 6}" text-anchor="end" class="tick">{end:%H:%M} UTC</text>'
        f'<text x="{LEFT - 6}" y="{TOP + 6}" text-anchor="end" class="tick">{peak}</text>'
        f'<text x="{LEFT - 6}" y="{base}" text-anchor="end" class="tick">0</text>'
    )
    total = sum(sum(c.values()) for m, c in counts.items() if m >= window[0])
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-labelledby="chart-title chart-desc">'
        f'<title id="chart-title">Events per minute by type</title>'
        f'<desc id="chart-desc">{total} events in the {minutes} minutes up to {end:%H:%M} UTC; '
        f"busiest minute {peak}.</desc>{axis}{''.join(bars)}</svg>"
    )


def totals(result: Mapping[str, Any]) -> str:
    """The built-in `stream/totals` query: all events and commands, events by type."""
    legend = "".join(
        f'<li><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true"><rect width="10" '
        f'height="10" rx="2" fill="{colour(r["event_type"])}"/></svg>'
        f"{escape(r['event_type'])} <strong>{int(r['events'])}</strong></li>"
        for r in result.get("events_by_type") or []
    )
    return (
        '<dl class="totals">'
        f"<div><dt>events</dt><dd>{int(result.get('events') or 0)}</dd></div>"
        f"<div><dt>commands</dt><dd>{int(result.get('commands') or 0)}</dd></div>"
        f'</dl><ul class="legend" aria-label="Events by type">{legend}</ul>'
    )


LIVE = "/ui/live/analytics"  # the views of `gateway/live/views.py` that keep these current


def chart_part(rows: Iterable[Mapping[str, Any]], minutes: int) -> str:
    """`div#chart`, followed live by the page (`data-live`)."""
    return f'<div id="chart" data-live="{LIVE}/chart">{chart(rows, minutes)}</div>'


def totals_part(result: Mapping[str, Any] | None) -> str:
    """`div#totals` (empty while the read model cannot answer), followed live."""
    shown = totals(result) if result is not None else ""
    return f'<div id="totals" data-live="{LIVE}/totals">{shown}</div>'


def panel(
    rows: Iterable[Mapping[str, Any]], result: Mapping[str, Any] | None, minutes: int = 15
) -> str:
    """`div#analytics`: chart and totals, each kept current by a live query."""
    body = chart_part(rows, minutes) + totals_part(result)
    return f'<div id="analytics" aria-live="off">{body}</div>'

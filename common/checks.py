"""What `Catalogue.check` refuses in an app's declarations, one line per problem.

`problems` walks the app in order and checks what spans its parts here: references
(feeds, aliases, live views, assets) that point at what exists, an event type or a table
declared twice, panels. Each part's own declarations are checked by its module:
- `common/checks_names.py`: names (snake_case, unique, not Ironstar's own) and a
  query's SQL text (one SELECT);
- `common/checks_aggregates.py`: an aggregate (tagged Struct unions, `initial`,
  schemas and upcasters);
- `common/checks_projections.py`: a projection and its queries (versions, tables,
  grants in the scope grammar `common.tokens.SCOPE`, parameters a query string carries);
- `common/checks_functions.py`: functions where functions are called, plain or async as
  Ironstar calls them.
The SQL itself is checked against DuckDB by `projector.app_sql`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from msgspec import inspect

from common.app import Feed, LiveView, Panel, Projection, Query
from common.checks_aggregates import aggregate_problems
from common.checks_functions import is_async, plain, takes
from common.checks_names import NAME, name_problems, texts
from common.checks_projections import projection_problems

if TYPE_CHECKING:
    from common.catalogue import Catalogue


def problems(cat: Catalogue) -> Iterator[str]:
    """Every problem of `cat`'s declarations, one line each (nothing: they hold): names,
    aggregates, projections and their tables, feeds, panels, the app's own functions, its
    assets and aliases, in that order. Raises nothing on purpose, though a declaration of
    a shape no check foresaw may raise anything (`Catalogue.check` reports it)."""
    app = cat.app
    yield from name_problems(cat)
    yield from _aggregates(cat)
    yield from _tables(cat)
    for feed in app.feeds:
        yield from _feed(cat, feed)
    yield from _panels(cat, app.panels)
    for role, shape in (("demo", "(rng, read)"), ("events", "(count, seed)")):
        if getattr(app, role) is not None:  # iterated without awaiting, as decide's events
            yield from plain(f"App {role}", getattr(app, role), shape)
    yield from _assets(cat)
    yield from _aliases(cat)


def _aggregates(cat: Catalogue) -> Iterator[str]:
    """Each aggregate's own problems; an event type in two aggregates; one without a Feed."""
    owners: dict[str, str] = {}
    for aggregate in cat.app.aggregates:
        yield from aggregate_problems(aggregate)
        for event_type in sorted(aggregate.event_types):
            if event_type in owners:
                yield (
                    f"event type {event_type} belongs to aggregates {owners[event_type]} "
                    f"and {aggregate.name}"
                )
            owners[event_type] = aggregate.name
        if aggregate.name not in cat.feeds:
            yield f"aggregate {aggregate.name} has no Feed (how its feed is snapshotted)"


def _tables(cat: Catalogue) -> Iterator[str]:
    """Each projection's own problems (built-in ones included); a table in two of them."""
    tables: dict[str, str] = {}
    for projection in cat.projections.values():
        yield from projection_problems(projection)
        yield from _reads(cat, projection)
        for table in projection.tables if texts(projection.tables) else ():
            if table in tables:
                yield f"table {table} belongs to {tables[table]} and {projection.name}"
            tables[table] = projection.name


def _reads(cat: Catalogue, projection: Projection) -> Iterator[str]:
    """`events` of a projection: None, or a frozenset of the app's event types."""
    if projection.events is None:
        return
    where = f"projection {projection.name}: events"
    if not isinstance(projection.events, frozenset) or not texts(tuple(projection.events)):
        yield f"{where} must be a frozenset of event types, got {projection.events!r}"
        return
    if not projection.events:
        yield f"{where} is empty: the projection would never apply a batch (None: every batch)"
    known = {t for aggregate in cat.app.aggregates for t in aggregate.event_types}
    for event_type in sorted(projection.events - known):
        yield f"{where}: {event_type!r} is no event type of the app's aggregates"


def _assets(cat: Catalogue) -> Iterator[str]:
    """The assets directory exists and holds every script the app names."""
    app = cat.app
    if app.assets and not Path(app.assets).is_dir():
        yield f"App assets {app.assets!r} is not a directory"
    for script in app.scripts:
        if not app.assets or not (Path(app.assets) / script).is_file():
            yield f"App script {script!r} is not a file in its assets directory"


def _aliases(cat: Catalogue) -> Iterator[str]:
    """Each alias path names a projection and (unless the path carries `{query}`) a query."""
    for template, (target, name) in cat.app.aliases.items():
        if target not in cat.projections:
            yield f"alias {template} names no projection {target!r}"
        elif "{query}" not in template and name not in cat.projections[target].queries:
            yield f"alias {template} names no query {target}/{name}"


def _feed(cat: Catalogue, feed: Feed) -> Iterator[str]:
    where = f"feed of {feed.aggregate}"
    if feed.aggregate not in cat.aggregates:
        yield f"{where}: no such aggregate"
    projection = cat.projections.get(feed.projection)
    if projection is None:
        yield f"{where}: no projection {feed.projection!r}"
        return
    for name in (feed.one, feed.every):
        if name and name not in projection.queries:
            yield f"{where}: no query {feed.projection}/{name}"
    one = projection.queries.get(feed.one)
    if isinstance(one, Query) and not one.key:
        yield f"{where}: query {feed.projection}/{feed.one} needs key= (the aggregate id)"
    if isinstance(one, Query) and not one.one:
        yield f"{where}: query {feed.projection}/{feed.one} must answer one aggregate (one=True)"


def _panels(cat: Catalogue, panels: tuple[Panel, ...]) -> Iterator[str]:
    names = [panel.name for panel in panels]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield f"panel name {name!r} is declared twice"
    for panel in panels:
        where = f"panel {panel.name}"
        if not isinstance(panel.name, str) or not NAME.fullmatch(panel.name):
            yield f"{where}: name must be lowercase snake_case ([a-z][a-z0-9_]*, ≤ 64)"
        if not (takes(panel.render, 2) and is_async(panel.render)):
            yield f"{where}: render must be an async function (ask, params) -> HTML"
        for role, shape in (("patches", "(sequence, event)"), ("snapshot", "(topic, state)"),
                            ("topics", "(params)")):  # fmt: skip
            if getattr(panel, role) is not None:
                yield from plain(f"{where}: {role}", getattr(panel, role), shape)
        wrong = [
            role for role in ("fragments", "live") if not isinstance(getattr(panel, role), Mapping)
        ]
        for role in wrong:
            yield f"{where}: {role} must be a dict {{name: ...}}"
        if wrong:
            continue
        for name, fragment in panel.fragments.items():
            if not (takes(fragment, 2) and is_async(fragment)):
                yield f"{where}: fragment {name} must be an async function (ask, params)"
        for name, view in panel.live.items():
            yield from _live(cat, f"{where}: live view {name}", view)


def _live(cat: Catalogue, where: str, view: Any) -> Iterator[str]:
    """Its functions plain; the projection and query it names for the page without
    parameters (when it names one then) exist."""
    if not isinstance(view, LiveView):
        yield f"{where} must be a LiveView(query, render)"
        return
    wrong = [*plain(f"{where}: query", view.query, "(params)"),
             *plain(f"{where}: render", view.render, "(result, params)")]  # fmt: skip
    yield from wrong
    if wrong:
        return
    try:
        projection, name, _ = view.query({})
    except Exception:  # it needs page parameters: checked when asked
        return
    if projection not in cat.projections:
        known = ", ".join(sorted(cat.projections))
        yield f"{where}: its query names no projection {projection!r} (known: {known})"
    elif name not in cat.projections[projection].queries:
        known = ", ".join(sorted(cat.projections[projection].queries))
        yield f"{where}: its query names no query {projection}/{name} (known: {known})"


def unbounded(cat: Catalogue) -> Iterator[str]:
    """`aggregate.Command.field` of each command int without both bounds: a client may
    send a number no SQL column holds (BIGINT: ±9.2e18); its event would be the dead
    letter of every projection that casts it. A warning, not a refusal."""
    for aggregate in cat.aggregates.values():
        for member in get_args(aggregate.commands) or (aggregate.commands,):
            for field in inspect.type_info(member).fields:  # type: ignore[attr-defined]
                field_type = field.type
                members = (
                    field_type.types if isinstance(field_type, inspect.UnionType) else (field_type,)
                )
                if any(_open_int(member) for member in members):
                    yield f"{aggregate.name}.{member.__name__}.{field.name}"


def _open_int(field_type: Any) -> bool:
    if not isinstance(field_type, inspect.IntType):
        return False
    bounds = field_type
    return (bounds.ge, bounds.gt) == (None, None) or (bounds.le, bounds.lt) == (None, None)

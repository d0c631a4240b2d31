"""What `Catalogue.check` refuses in an app's declarations, one line per problem.

The shapes every service relies on: functions where functions are called, tagged Structs
with unique tags where messages are decoded, ints where versions and schemas are compared,
query parameters a query string can carry, names the scope grammar can grant
(`common.tokens.SCOPE`), and references (feeds, aliases, upcasters, critical types) that
point at what exists. The SQL itself is checked against DuckDB by `projector.app_sql`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from inspect import (
    isasyncgen,
    isasyncgenfunction,
    isawaitable,
    iscoroutine,
    iscoroutinefunction,
    unwrap,
)
from inspect import signature as inspect_signature
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import duckdb
import msgspec
from msgspec import inspect

from common import builtin
from common.app import Aggregate, Feed, LiveView, Panel, Projection, Query
from common.tokens import SCOPE

if TYPE_CHECKING:
    from common.catalogue import Catalogue

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
ENGINE_TABLES = frozenset({"checkpoint", "dead_letters", "projection_versions"})
RESERVED = frozenset({"sql", "snapshot", "rebuild", "live"})
# What a query string carries: one value per name, as text msgspec converts.
_SCALAR = (inspect.StrType, inspect.IntType, inspect.FloatType, inspect.BoolType,
           inspect.LiteralType, inspect.NoneType)  # fmt: skip


def problems(cat: Catalogue) -> Iterator[str]:
    """Every problem of `cat`'s declarations, one line each (nothing: they hold): names,
    aggregates, projections and their tables, feeds, panels, the app's own functions, its
    assets and aliases, in that order. Raises nothing on purpose, though a declaration of
    a shape no check foresaw may raise anything (`Catalogue.check` reports it)."""
    app = cat.app
    yield from _names(cat)
    yield from _aggregates(cat)
    yield from _tables(cat)
    for feed in app.feeds:
        yield from _feed(cat, feed)
    yield from _panels(cat, app.panels)
    for role, shape in (("demo", "(rng, read)"), ("events", "(count, seed)")):
        if getattr(app, role) is not None:  # iterated without awaiting, as decide's events
            yield from _plain(f"App {role}", getattr(app, role), shape)
    yield from _assets(cat)
    yield from _aliases(cat)


def _names(cat: Catalogue) -> Iterator[str]:
    """The app's, its aggregates' and its projections' names: snake_case, unique, and not
    one of Ironstar's built-in projections."""
    app = cat.app
    if not isinstance(app.name, str) or not NAME.fullmatch(app.name):
        yield f"App name {app.name!r} must be lowercase snake_case ([a-z][a-z0-9_]*, ≤ 64)"
    if not app.aggregates:
        yield "declares no aggregate"
    names = [a.name for a in app.aggregates] + [p.name for p in app.projections]
    for own in builtin.BUILT_IN:
        if own.name in (p.name for p in app.projections):
            yield f"projection name {own.name!r} is Ironstar's own"
    for name in names:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            yield f"name {name!r} must be lowercase snake_case ([a-z][a-z0-9_]*, ≤ 64)"
    for name in {n for n in names if names.count(n) > 1}:
        yield f"name {name!r} is declared twice"


def _aggregates(cat: Catalogue) -> Iterator[str]:
    """Each aggregate's own problems; an event type in two aggregates; one without a Feed."""
    owners: dict[str, str] = {}
    for aggregate in cat.app.aggregates:
        yield from _aggregate(aggregate)
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
        yield from _projection(projection)
        for table in projection.tables if _texts(projection.tables) else ():
            if table in tables:
                yield f"table {table} belongs to {tables[table]} and {projection.name}"
            tables[table] = projection.name


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


def _aggregate(aggregate: Aggregate) -> Iterator[str]:
    where = f"aggregate {aggregate.name}"
    for role in ("decide", "evolve"):
        function = getattr(aggregate, role)
        found = list(_plain(f"{where}: {role}", function, "(state, message)"))
        yield from found
        if not found and _gives_awaitable(function, aggregate.initial, None):
            yield (
                f"{where}: {role} returns a coroutine (a plain function calling an async one?); "
                "it must return its result, it is never awaited"
            )
    yield from _union(where, "command", aggregate.commands, "type")
    yield from _union(where, "event", aggregate.events, "event_type")
    shapes = {"critical": (frozenset, "a frozenset of event types"),
              "schemas": (Mapping, "a dict {event_type: current schema}"),
              "upcasters": (Mapping, "a dict {(event_type, schema): function}")}  # fmt: skip
    wrong = [f"{where}: {role} must be {what}" for role, (expected, what) in shapes.items()
             if not isinstance(getattr(aggregate, role), expected)]  # fmt: skip
    if wrong:
        yield from wrong
        return
    state = type(aggregate.initial)
    try:  # the projector stores each state as msgspec JSON and reads it back as this type
        msgspec.json.decode(msgspec.json.encode(aggregate.initial), type=state)
    except (TypeError, msgspec.ValidationError, msgspec.EncodeError) as exc:
        yield (
            f"{where}: initial must be an instance of its state Struct (msgspec encodes it "
            f"and reads it back), got a {state.__name__}: {_line(exc)}"
        )
    for event_type in sorted(aggregate.critical - aggregate.event_types):
        yield f"{where}: critical event type {event_type} is not one of its events"
    yield from _schemas(where, aggregate)
    yield from _upcasters(where, aggregate)


def _schemas(where: str, aggregate: Aggregate) -> Iterator[str]:
    """Each schema is an int ≥ 1 of a known event type, with an upcaster for every step
    below it (a stored payload of any older schema must reach the current one)."""
    for event_type, current in aggregate.schemas.items():
        if event_type not in aggregate.event_types:
            yield f"{where}: schema given for unknown event type {event_type}"
        if type(current) is not int or current < 1:
            yield f"{where}: schema of {event_type} must be an int ≥ 1, got {current!r}"
            continue
        for schema in range(1, current):
            if (event_type, schema) not in aggregate.upcasters:
                yield f"{where}: no upcaster for {event_type} schema {schema} → {schema + 1}"


def _upcasters(where: str, aggregate: Aggregate) -> Iterator[str]:
    """Each upcaster is keyed (event type, schema) within that type's schemas, and plain."""
    for key, step in aggregate.upcasters.items():
        event_type, schema = key if isinstance(key, tuple) and len(key) == 2 else (key, None)
        current = aggregate.schemas.get(event_type, 1)
        if event_type not in aggregate.event_types:
            yield f"{where}: upcaster for unknown event type {event_type!r}"
        elif type(schema) is not int or not 1 <= schema < current:
            yield (
                f"{where}: upcaster {event_type} {schema!r} → next is outside its schemas "
                f"1..{current} (schemas={{{event_type!r}: {current}}})"
            )
        yield from _plain(f"{where}: upcaster {event_type} {schema!r}", step, "(payload)")


def _union(where: str, what: str, union: Any, field: str) -> Iterator[str]:
    tags: list[str] = []
    for member in get_args(union) or (union,):
        if not (isinstance(member, type) and issubclass(member, msgspec.Struct)):
            yield f"{where}: {what} type {member!r} is not a msgspec Struct"
            continue
        config = member.__struct_config__
        if config.tag_field != field or not isinstance(config.tag, str):
            yield (
                f'{where}: {what} {member.__name__} needs tag_field="{field}" and a text tag '
                f'(class {member.__name__}(Struct, tag="...", tag_field="{field}"))'
            )
            continue
        if config.tag in tags:
            yield f"{where}: two {what} types have the tag {config.tag!r}"
        tags.append(config.tag)


def _projection(projection: Projection) -> Iterator[str]:
    where = f"projection {projection.name}"
    if projection.name in RESERVED:
        yield f"projection name {projection.name!r} is reserved"
    if type(projection.version) is not int or projection.version < 1:
        yield f"{where}: version must be an int ≥ 1, got {projection.version!r}"
    if not _texts(projection.ddl):
        yield f"{where}: ddl must be a tuple of SQL statements"
    if not _texts(projection.tables):
        yield f"{where}: tables must be a tuple of table names"
    for table in sorted(ENGINE_TABLES.intersection(projection.tables or ())):
        yield f"{where}: table {table} is Ironstar's own"
    if callable(projection.apply):
        yield from _plain(f"{where}: apply", projection.apply, "(cursor, batch)")
    elif not _texts(projection.apply):
        yield f"{where}: apply must be a tuple of SQL statements or a function (cursor, batch)"
    if not isinstance(projection.grant, str) or not SCOPE.fullmatch(projection.scope):
        yield f"{where}: grant {projection.grant!r} cannot be granted (a scope is read:<name>)"
    if not isinstance(projection.queries, Mapping):
        yield f"{where}: queries must be a dict {{name: Query(...)}}"
        return
    for name, query in projection.queries.items():
        yield from _query(f"query {projection.name}/{name}", query)


def _query(where: str, query: Query) -> Iterator[str]:
    if not isinstance(query, Query):
        yield f"{where} must be a Query(...)"
        return
    if bool(query.sql) == (query.run is not None):
        yield f"{where} needs exactly one of sql= or run="
    if query.run is not None:
        yield from _plain(f"{where}: run", query.run, "(cursor, params)")
    if query.sql:
        yield from _select(where, query.sql)
    params = query.params
    if not (isinstance(params, type) and issubclass(params, msgspec.Struct)):
        yield f"{where}: params must be a msgspec Struct class, got {params!r}"
        return
    for field in inspect.type_info(params).fields:  # type: ignore[attr-defined]
        if not _carried(field.type):
            yield (
                f"{where}: parameter {field.name} cannot come in a query string; use str, "
                "int, float, bool, a Literal, or Optional of one (bounded with Meta)"
            )
    if query.key and query.key not in params.__struct_fields__:
        yield f"{where}: key {query.key!r} is not a parameter"


def _select(where: str, sql: Any) -> Iterator[str]:
    if not isinstance(sql, str):
        yield f"{where}: sql must be text"
        return
    try:
        kinds = [s.type.name for s in duckdb.extract_statements(sql)]
    except (duckdb.Error, ValueError) as exc:
        yield f"{where}: its SQL does not parse: {_line(exc)}"
        return
    if kinds != ["SELECT"]:
        yield f"{where}: sql must be one read-only SELECT, got {', '.join(kinds) or 'nothing'}"


def _carried(field_type: Any) -> bool:
    """A query string can carry a value of `field_type` (msgspec.inspect): a scalar, or a
    union of scalars (Optional)."""
    if isinstance(field_type, inspect.UnionType):
        return all(_carried(member) for member in field_type.types)
    return isinstance(field_type, _SCALAR)


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
        if not (_takes(panel.render, 2) and _is_async(panel.render)):
            yield f"{where}: render must be an async function (ask, params) -> HTML"
        for role, shape in (("patches", "(sequence, event)"), ("snapshot", "(topic, state)"),
                            ("topics", "(params)")):  # fmt: skip
            if getattr(panel, role) is not None:
                yield from _plain(f"{where}: {role}", getattr(panel, role), shape)
        wrong = [
            role for role in ("fragments", "live") if not isinstance(getattr(panel, role), Mapping)
        ]
        for role in wrong:
            yield f"{where}: {role} must be a dict {{name: ...}}"
        if wrong:
            continue
        for name, fragment in panel.fragments.items():
            if not (_takes(fragment, 2) and _is_async(fragment)):
                yield f"{where}: fragment {name} must be an async function (ask, params)"
        for name, view in panel.live.items():
            yield from _live(cat, f"{where}: live view {name}", view)


def _live(cat: Catalogue, where: str, view: Any) -> Iterator[str]:
    """Its functions plain; the projection and query it names for the page without
    parameters (when it names one then) exist."""
    if not isinstance(view, LiveView):
        yield f"{where} must be a LiveView(query, render)"
        return
    wrong = [*_plain(f"{where}: query", view.query, "(params)"),
             *_plain(f"{where}: render", view.render, "(result, params)")]  # fmt: skip
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


def _plain(what: str, function: Any, shape: str) -> Iterator[str]:
    """`what` must be a plain (not async) function taking the arguments `shape` names:
    Ironstar calls it without awaiting, so a coroutine would never run."""
    count = shape.count(",") + 1
    if not callable(function):
        yield f"{what} must be a function {shape}, got a {type(function).__name__}"
    elif not _takes(function, count):
        yield f"{what} must be a function {shape}: it cannot be called with {count} argument(s)"
    elif _awaited(function):
        yield f"{what} must be a plain function {shape}, not async (it is never awaited)"


def _takes(function: Any, count: int) -> bool:
    """`function` can be called with `count` positional arguments."""
    if not callable(function):
        return False
    try:
        inspect_signature(function).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): trust it
        pass
    return True


def _is_async(function: Any) -> bool:
    """An async def (or an instance whose __call__ is one)."""
    call = getattr(function, "__call__", None)  # noqa: B004 (an instance's async __call__)
    return iscoroutinefunction(function) or iscoroutinefunction(call)


def _awaited(function: Any) -> bool:
    """What `function` gives must be awaited or iterated with `async for`: an async def or
    async generator, itself, as an instance's __call__, or under `functools.wraps`."""
    call = getattr(function, "__call__", None)  # noqa: B004 (an instance's async __call__)
    for candidate in (function, call, unwrap(function) if callable(function) else None):
        if iscoroutinefunction(candidate) or isasyncgenfunction(candidate):
            return True
    return False


def _gives_awaitable(function: Any, *probe: Any) -> bool:
    """Whether `function(*probe)` answers an awaitable or an async iterator: a plain
    function that calls an async one. Only for pure functions (`decide`, `evolve`): a
    probe is no real message, so whatever it raises says nothing; a coroutine it gives
    is closed unstarted (its body never runs)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "coroutine ... was never awaited"
            answer = function(*probe)
    except Exception:
        return False
    if iscoroutine(answer):
        answer.close()
        return True
    return isawaitable(answer) or isasyncgen(answer)


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


def _texts(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(item, str) for item in value)


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]

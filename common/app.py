"""The app interface: what a team's package declares to run its domain on Ironstar.

An app is plain typed Python: frozen dataclasses holding the domain's own functions and
msgspec types, no base classes to inherit. A package exposes one `app = App(...)` at its
top level; every service loads it from `IRONSTAR_APP` (see `common/catalogue.py`).

- `Aggregate`: tagged command and event unions (msgspec Structs with `tag_field="type"` /
  `"event_type"`), an initial state, `decide(state, command) -> list[event]`,
  `evolve(state, event) -> state`, the current schema of each event type with the
  upcasters that bring older payloads up to it, and the critical event types (never
  debounced on a feed).
- `Projection`: tables (DDL), how a batch is applied — SQL statements over the staged
  relation `batch` (see `projector/staging.py` for its columns) or a Python hook — and
  named `Query`s with typed parameters and result shapes. Reads need `read:<grant>`.
- `Feed`: how a feed of an aggregate type is snapshotted from a projection's queries.
- `Panel`: optional dashboard markup (HTML from query results) and the Datastar patches
  of an event; `Demo`: a plausible endless command script for `ironstar demo`.
"""

from __future__ import annotations

import random
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, get_args

import msgspec

from common.envelope import Envelope
from common.errors import Invalid, NotFound, invalid_from_msgspec

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]  # payload of schema N -> payload of schema N + 1


def tags(union: Any) -> frozenset[str]:
    """The tags of a union of tagged Structs (a single Struct counts as a union of one)."""
    members = get_args(union) or (union,)
    found = (getattr(getattr(m, "__struct_config__", None), "tag", None) for m in members)
    return frozenset(tag for tag in found if isinstance(tag, str))  # others: see checks


@dataclass(frozen=True)
class Aggregate:
    """One aggregate type: its pure core, codecs and schema history."""

    name: str
    initial: Any
    decide: Callable[[Any, Any], list[Any]]
    evolve: Callable[[Any, Any], Any]
    commands: Any  # a union of tagged Structs, tag_field "type"
    events: Any  # a union of tagged Structs, tag_field "event_type"
    schemas: Mapping[str, int] = field(default_factory=dict)  # event type -> current (default 1)
    upcasters: Mapping[tuple[str, int], Upcaster] = field(default_factory=dict)
    critical: frozenset[str] = frozenset()
    command_types: frozenset[str] = field(init=False)
    event_types: frozenset[str] = field(init=False)
    event_structs: Mapping[str, Any] = field(init=False)  # event type -> its Struct

    def __post_init__(self) -> None:
        object.__setattr__(self, "command_types", tags(self.commands))
        object.__setattr__(self, "event_types", tags(self.events))
        members = get_args(self.events) or (self.events,)
        structs = {str(m.__struct_config__.tag): m for m in members}
        object.__setattr__(self, "event_structs", structs)

    def command(self, command_type: str, payload: Any) -> Any:
        """The command Struct (a member of `commands`) from its JSON parts: NotFound (404) for
        an unknown type, Invalid (422, naming the field) for a bad shape."""
        if command_type not in self.command_types:
            known = ", ".join(sorted(self.command_types))
            raise NotFound(
                f"{self.name} has no command {command_type[:80]!r}; known: {known}", field="type"
            )
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise Invalid("payload must be a JSON object", field="payload")
        try:
            return msgspec.convert({**payload, "type": command_type}, self.commands)
        except msgspec.ValidationError as exc:
            raise invalid_from_msgspec(exc, f"{command_type} payload") from None

    def decided(self, state: Any, command: Any) -> list[Any]:
        """`decide`'s events, checked before anything is appended: a list of this
        aggregate's events, each within its own Struct's bounds and read back equal to
        itself (msgspec encodes it and decodes it back, as the projector will), that
        `evolve` accepts in turn from
        `state`. TypeError (or what `evolve` raises) for anything else: a bug of the app,
        never stored."""
        events = self.decide(state, command)
        if not isinstance(events, list):
            raise TypeError(f"{self.name}: decide returned a {type(events).__name__}, not a list")
        members = tuple(m for m in get_args(self.events) or (self.events,) if isinstance(m, type))
        for event in events:
            if not isinstance(event, members):
                raise TypeError(
                    f"{self.name}: decide returned a {type(event).__name__}, not an event"
                )
            try:  # the projector decodes it as one of the declared events: out of bounds, or a
                # subclass with looser fields, is never stored
                stored = msgspec.json.decode(msgspec.json.encode(event), type=self.events)
            except (msgspec.ValidationError, msgspec.EncodeError) as exc:
                raise TypeError(
                    f"{self.name}: decide returned a {type(event).__name__} its own Struct "
                    f"refuses: {exc}"
                ) from None
            if stored != event:  # what every reader folds must be what the writer folds
                raise TypeError(  # (a tuple in `Any`, a `__post_init__` run again: verify11b N1)
                    f"{self.name}: decide returned a {type(event).__name__} that storing "
                    f"changes: read back it is {stored!r}"[:500]
                )
            state = self.evolve(state, event)
        return events

    def schema(self, event_type: str) -> int:
        """The current payload schema of `event_type` (`schemas`, default 1)."""
        return self.schemas.get(event_type, 1)

    def upcast(self, event_type: str, schema: int, payload: Payload) -> Payload:
        """The payload in the current schema: upcasters N → N+1 → … applied in turn.
        Raises ValueError when a step is missing."""
        current = self.schema(event_type)
        while schema < current:
            step = self.upcasters.get((event_type, schema))
            if step is None:
                raise ValueError(f"no upcaster for {event_type} schema {schema} → {schema + 1}")
            payload, schema = step(payload), schema + 1
        return payload

    def to_payload(self, event: Any) -> tuple[str, Payload]:
        """(event type, payload as JSON builtins) of an event Struct: the tag field leaves the
        payload."""
        payload = msgspec.to_builtins(event)
        return payload.pop("event_type"), payload

    def from_payload(self, event_type: str, schema: int, payload: Payload) -> Any:
        """The event of a stored payload (upcast to the current schema). Raises
        msgspec.ValidationError for a payload of the wrong shape or an unknown type."""
        current = self.upcast(event_type, schema, payload)
        struct = self.event_structs.get(event_type)
        if struct is None or "event_type" in current:  # the union names what is wrong
            return msgspec.convert({**current, "event_type": event_type}, self.events)
        # Straight into the member: ~10x cheaper than the union, which needs a copy with
        # the tag added (every reader converts every stored event).
        return msgspec.convert(current, struct)

    def fold(self, events: Iterable[Any], state: Any = None) -> Any:
        """The state after `events` (event Structs, in version order) evolved from `state` (default:
        `initial`). Raises what `evolve` raises."""
        state = self.initial if state is None else state
        for event in events:
            state = self.evolve(state, event)
        return state


class NoParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The parameters of a query that takes none."""


Connection = Any  # a DuckDB connection (cursor); apps need not import duckdb for typing
Run = Callable[[Connection, Any], Any]  # (cursor, params struct) -> result (builtins)


@dataclass(frozen=True)
class Query:
    """A named read of a projection.

    `sql` is one SELECT with `$name` placeholders filled from the `params` Struct (its
    fields are the query string's typed parameters); rows come back as objects, or with
    `one=True` the first row (404 with `missing` when there is none). `run` instead is a
    Python function `(cursor, params) -> result` for what one SELECT cannot say. `result`
    is the type of the answer, for the OpenAPI document (default: rows as objects, one
    object with `one=True`; see `answer_type`). `key` names the parameter that
    is an aggregate id: a token holding `read:<grant>:<that id>` may then ask for it.
    """

    sql: str = ""
    run: Run | None = None
    params: type[msgspec.Struct] = NoParams
    result: Any = None
    one: bool = False
    key: str | None = None
    description: str = ""
    missing: str = "not found"

    @property
    def answer_type(self) -> Any:
        """The type of the answer: `result`, else a row (`one=True`) or a list of rows."""
        if self.result is not None:
            return self.result
        return dict[str, Any] if self.one else list[dict[str, Any]]


@dataclass(frozen=True)
class Batch:
    """What a Python hook sees: the batch's events in stream order, and the command id
    of the event just before the batch ("" if none)."""

    events: Sequence[tuple[int, Envelope]]
    preceding: str


Hook = Callable[[Connection, Batch], None]


class Unapplicable(Exception):
    """Raised by a hook for an event it cannot apply (a payload it does not understand):
    the event becomes this projection's dead letter, and every other projection applies it.
    `projection` is set by the engine ("" when no projection can apply the event)."""

    def __init__(self, sequence: int, error: str) -> None:
        super().__init__(f"sequence {sequence}: {error}")
        self.sequence = sequence
        self.error = error
        self.projection = ""


@dataclass(frozen=True)
class Projection:
    """A read model: tables, how a batch is applied, what it answers.

    `apply` is either SQL statements run in order over the staged relation `batch` (one
    row per event of the batch, see `projector/staging.py`), or a Python hook. Either
    runs inside the batch's transaction, together with the checkpoint; the engine skips
    events already applied and hands over events in stream order. `version` is stored in
    the file: a change rebuilds the projection. `tables` are dropped by a rebuild.
    Reads need the scope `read:<grant>` (default: the projection's name).
    `events`, when given, names the event types `apply` reads (each an event type of the
    app, checked at start): the engine skips `apply` for a batch holding none of them, as
    every statement costs ~1 ms even when it changes nothing (docs/extending.md). None
    (the default): every batch.
    """

    name: str
    version: int
    ddl: tuple[str, ...]
    tables: tuple[str, ...]
    apply: tuple[str, ...] | Hook
    queries: Mapping[str, Query] = field(default_factory=dict)
    grant: str = ""
    events: frozenset[str] | None = None

    def reads(self, event_types: Collection[str]) -> bool:
        """Whether a batch holding `event_types` concerns this projection (`events`)."""
        return self.events is None or not self.events.isdisjoint(event_types)

    @property
    def scope(self) -> str:
        """The scope a token needs to read this projection: `read:<grant>` (default `read:<name>`);
        `read:<grant>:<id>` for one aggregate's rows (the gateway's `read_grant`)."""
        return f"read:{self.grant or self.name}"


@dataclass(frozen=True)
class Feed:
    """How the feed of one aggregate type is snapshotted (for an unresumable
    `Last-Event-ID`): `one` answers a single aggregate (its `key` parameter is the id),
    `every` answers the whole type (none: the snapshot of the whole type is
    `{"unavailable": why}`, gateway/feed/snapshot.py)."""

    aggregate: str
    projection: str
    one: str
    every: str = ""


@dataclass(frozen=True)
class Patch:
    """One Datastar `patch-elements`: `elements` (HTML) at `selector` with `mode`."""

    elements: str = ""
    selector: str | None = None
    mode: str = "outer"


Ask = Callable[[str, str, Mapping[str, Any]], Awaitable[Any]]  # (projection, query, params)
Fragment = Callable[[Ask, Mapping[str, str]], Awaitable[str]]  # (ask, page params) -> HTML


@dataclass(frozen=True)
class LiveView:
    """A part of a panel kept current by one live query, served as a Datastar feed at
    `/ui/live/<panel>/<name>?<page params>`: `query(params)` is (projection, query, its
    parameters as strings) for the page's parameters; `render(result, params)` the HTML
    of one answer (None: the read model cannot answer; rendered once before the feed
    starts, so page parameters it refuses are the 4xx), one element with an id that
    replaces the element of that id. The page follows every element's `data-live` URL."""

    query: Callable[[Mapping[str, str]], tuple[str, str, Mapping[str, str]]]
    render: Callable[[Any, Mapping[str, str]], str]


@dataclass(frozen=True)
class Panel:
    """A dashboard panel. `render(ask, params)` returns its HTML from queries (`ask`
    answers None when the read model cannot answer now); `patches(sequence, event)`
    are the Datastar patches a live event makes to it; `snapshot(topic, state)` the
    patches a feed snapshot of `topic` makes. `params` are the page's query string.
    `fragments` are parts of it served at `/ui/panels/<panel>/<fragment>`; `live` parts
    kept current by a live query (`LiveView`), which the page follows by `data-live`.
    `topics(params)` are the feed topics the panel follows (`type` or `type:id`; the
    page follows those the caller is granted; no panel naming any: every type)."""

    name: str
    title: str
    render: Fragment
    patches: Callable[[int, Envelope], list[Patch]] | None = None
    snapshot: Callable[[str, Any], list[Patch]] | None = None
    fragments: Mapping[str, Fragment] = field(default_factory=dict)
    topics: Callable[[Mapping[str, str]], list[str]] | None = None
    live: Mapping[str, LiveView] = field(default_factory=dict)


DemoCommand = tuple[str, str, str, Payload]  # aggregate type, id, command type, payload
Read = Callable[[str, str, Mapping[str, Any]], Any]  # a query's result, None when not found


@dataclass(frozen=True)
class App:
    """Everything per-domain Ironstar runs. `demo(rng, read)` yields an endless plausible
    command script (`read(projection, query, params)` answers from the running stack);
    `events(count, seed)` yields stored envelopes of valid histories for the benchmarks.
    `aliases` are extra GET paths for queries (`{param}` segments, and `{query}` for the
    query's name). `assets` is a directory served at `/app/`; `scripts` are file names in
    it the dashboard loads after its own script (which offers `window.ironstar.send`)."""

    name: str
    aggregates: tuple[Aggregate, ...]
    projections: tuple[Projection, ...]
    feeds: tuple[Feed, ...] = ()
    panels: tuple[Panel, ...] = ()
    demo: Callable[[random.Random, Read], Iterator[DemoCommand]] | None = None
    events: Callable[[int, int], Iterator[Envelope]] | None = None
    aliases: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    assets: str = ""
    scripts: tuple[str, ...] = ()

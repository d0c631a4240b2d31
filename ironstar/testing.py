"""A test kit for apps: given/when/then for deciders, given events/then a query for projections.

Deciders run as plain functions (no NATS): `given(aggregate, *events).when(command)`
folds the events, decides, and returns an `Outcome` to check with `.then(*events)` or
`.refused(ErrorType, "words of the rule")`. A command is a Struct, or `(type, payload)`
as a client sends it (so its shape is checked too).

Projections run in the real engine over a real in-memory DuckDB:
`project(app, (aggregate_type, id, event), ...)` stores the events as the writer would
(versions per aggregate, one command per event, sequences from 1) and applies them as
one batch, or `batches` batches; `.query(projection, name, **params)` answers like the
projector does for the gateway.

`contract(app)` (ironstar/contract.py) checks the whole app against the contract every
app holds to: call it from the app's own tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from common.app import Aggregate, App
from common.catalogue import Catalogue
from common.envelope import Envelope, new_envelope
from common.errors import IronstarError
from ironstar.contract import contract
from projector.readmodel import ReadModel

__all__ = ["Outcome", "Projected", "contract", "given", "project"]
CLOCK = "2026-01-01T00:00:00.000Z"  # occurred_at of every projected event (a fixed clock)


@dataclass(frozen=True)
class Outcome:
    """What a decider did with one command: the events it decided, or the error that refused it."""

    events: list[Any] | None
    error: IronstarError | None

    def then(self, *expected: Any) -> None:
        """The command was accepted and decided exactly `expected` (none: a no-op)."""
        assert self.error is None, f"refused: {self.error!r}"
        assert self.events == list(expected), f"decided {self.events}, expected {expected}"

    def refused(self, error_type: type[IronstarError], words: str = "") -> None:
        """The command was refused with an `error_type` whose message contains `words`."""
        expected = error_type.__name__
        assert self.error is not None, f"accepted with {self.events}; expected {expected}"
        assert isinstance(self.error, error_type), f"refused with {self.error!r}, not {expected}"
        assert words in self.error.message, f"{self.error.message!r} does not say {words!r}"


@dataclass(frozen=True)
class Given:
    """An aggregate after `history` (its events, in order): `when(command)` decides against the
    folded state."""

    aggregate: Aggregate
    history: tuple[Any, ...]

    def when(self, command: Any) -> Outcome:
        """Decide `command` (a command Struct, or (command type, payload) built as the API would)
        against the state after the history: the Outcome, an IronstarError caught as a refusal."""
        state = self.aggregate.fold(self.history)
        try:
            if isinstance(command, tuple):
                command = self.aggregate.command(*command)
            return Outcome(self.aggregate.decide(state, command), None)
        except IronstarError as exc:
            return Outcome(None, exc)


def given(aggregate: Aggregate, *events: Any) -> Given:
    """The aggregate after `events` (event Structs, oldest first)."""
    return Given(aggregate, events)


class Projected:
    """The app's projections after some events, in a real in-memory DuckDB."""

    def __init__(
        self, app: App, envelopes: list[Envelope], batches: int = 1, dead_ok: bool = False
    ) -> None:
        self.catalogue = Catalogue(app)
        self.model = ReadModel(Path(":memory:"), catalogue=self.catalogue)
        self.dead_letters: list[tuple[int, str, str]] = []  # (sequence, subject, error)
        size = max(1, -(-len(envelopes) // max(1, batches)))
        for start in range(0, len(envelopes), size):
            chunk = list(enumerate(envelopes[start : start + size], start + 1))
            dead = self.model.apply(chunk, start + len(chunk))
            self.dead_letters += [(d[0], d[1], d[2]) for d in dead]
        if self.dead_letters and not dead_ok:
            lines = [f"#{n} ({_told(envelopes[n - 1])}): {why}" for n, _, why in self.dead_letters]
            raise AssertionError(
                f"{len(lines)} event(s) could not be applied (dead letters): " + "; ".join(lines)
            )

    def query(self, projection: str, name: str, **params: Any) -> Any:
        """The query's answer (plain JSON values, as the gateway sends them)."""
        typed = self.catalogue.params(projection, name, params)
        answer = self.model.query(projection, name, typed)
        return msgspec.json.decode(msgspec.json.encode(answer, enc_hook=str))

    def sql(self, text: str) -> list[tuple[Any, ...]]:
        """The rows of any SELECT over the projection's in-memory DuckDB."""
        rows: list[tuple[Any, ...]] = self.model.con.execute(text).fetchall()
        return rows


def _told(event: Envelope) -> str:
    return f"{event.aggregate_type} {event.aggregate_id!r} {event.event_type}"


def project(
    app: App, *events: tuple[str, str, Any], batches: int = 1, dead_ok: bool = False
) -> Projected:
    """Apply `(aggregate_type, aggregate_id, event Struct)`s to `app`'s projections.

    AssertionError naming each event the engine dead-lettered instead of applying (its
    sequence, aggregate, type and error), unless `dead_ok`: then they are in
    `.dead_letters`. An unknown aggregate type is an AssertionError naming the known ones.
    With one batch (the default, without `dead_ok`), the events are applied one per batch
    too, and an AssertionError names a table of the app whose rows differ: a projection
    must not depend on how the stream is cut into batches (docs/extending.md).
    """
    told = envelopes(app, events)
    together = Projected(app, told, batches, dead_ok)
    if batches == 1 and not dead_ok and len(told) > 1:
        same_alone(app, told, together)
    return together


def same_alone(app: App, told: list[Envelope], together: Projected) -> None:
    """AssertionError unless `told` applied one per batch gives `app`'s tables the rows
    `together` holds (or if one is then a dead letter)."""
    rule = "its rows must not depend on batching (docs/extending.md, Batch independence)"
    try:
        alone = Projected(app, told, batches=len(told))
    except AssertionError as exc:
        raise AssertionError(f"applied one event per batch, {exc}; {rule}") from None
    for projection in app.projections:
        for table in projection.tables:
            rows = f'SELECT * FROM "{table}" ORDER BY ALL'
            one, each = together.sql(rows), alone.sql(rows)
            assert one == each, (
                f"projection {projection.name}: table {table} holds {one[:3]} applied in one "
                f"batch, {each[:3]} one event per batch; {rule}"
            )


def envelopes(app: App, events: Iterable[tuple[str, str, Any]]) -> list[Envelope]:
    """Stored envelopes of `events` as the writer makes them (current schemas)."""
    aggregates = {a.name: a for a in app.aggregates}
    versions: dict[tuple[str, str], int] = {}
    out = []
    for number, (aggregate_type, aggregate_id, event) in enumerate(events, 1):
        aggregate = aggregates.get(aggregate_type)
        assert aggregate is not None, (
            f"event {number}: app {app.name} has no aggregate type {aggregate_type!r}; "
            f"known: {', '.join(sorted(aggregates))}"
        )
        event_type, payload = aggregate.to_payload(event)
        key = (aggregate_type, aggregate_id)
        versions[key] = versions.get(key, 0) + 1
        out.append(
            new_envelope(
                aggregate_type,
                aggregate_id,
                versions[key],
                event_type,
                payload,
                schema=aggregate.schema(event_type),
                occurred_at=CLOCK,
                command_id=f"c{number}",
            )
        )
    return out

"""Applying a batch that fails: isolate the event it fails on, dead-letter it, go on.

`ReadModel.apply` (`projector/readmodel.py`) hands a batch to `isolate`, which commits it
through the read model's own transaction (`Applying.commit`). When that fails for a reason
that can come from the data (anything but `MACHINE`), the batch is applied again in halves,
each committed with its checkpoint, down to the one event that fails; that event becomes
a `DeadLetter` of the projection that raised (every other projection applies it, in a
transaction of its own) or, when no projection can have it, of every one (`EVERY`). With
`halt`, the events before it are committed and `Poisoned` is raised instead. The rule and
its reasons: docs/architecture.md, "Poison events".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import duckdb
import structlog

from common import envelope as codec
from common.app import Projection, Unapplicable
from common.envelope import Stored
from common.errors import StorageFull
from common.subjects import Subjects
from projector.projection import Failed

log = structlog.get_logger()

EVERY = "*"  # the projection of a dead letter that no projection applied


class DeadLetter(NamedTuple):
    """An event `projection` did not apply (`EVERY`: none did), and why."""

    sequence: int
    subject: str
    error: str
    data: bytes  # the stored body
    projection: str = EVERY


class Poisoned(Exception):
    """An event could not be decoded or applied and the replica is set to halt."""


# Failures of the machine, never blamed on an event (anything else raised while applying a
# batch is isolated to the event that causes it and dead-lettered).
MACHINE = (
    StorageFull,
    MemoryError,
    duckdb.OutOfMemoryException,
    duckdb.IOException,
    duckdb.InterruptException,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.ConnectionException,
    Poisoned,
)
_SUBJECTS = Subjects()  # the default prefix, for an event applied without its subject

# (projections, events, last sequence, dead letters) -> None: one transaction that applies
# the events by those projections, records the letters and moves the checkpoint.
Commit = Callable[[Sequence[Projection], Sequence[Stored], int, Sequence[DeadLetter]], None]


@dataclass
class Applying:
    """One `ReadModel.apply` call: what applies it, where it commits, how it fails."""

    projections: list[Projection]
    subjects: Mapping[int, str]  # sequence -> stream subject
    halt: bool
    commit: Commit  # moves the checkpoint when it returns
    checkpoint: Callable[[], int]  # the read model's checkpoint now
    dead: list[DeadLetter] = field(default_factory=list)  # recorded so far


def isolate(
    batch: Applying, events: list[Stored], dead: list[DeadLetter], last: int
) -> list[DeadLetter]:
    """Commit `events` and the `dead` letters found before (both above the checkpoint, in
    stream order) up to sequence `last`, isolating the events that fail; returns every dead
    letter recorded, each also logged (`dead_letter`) even when this raises `Poisoned` or
    an error of `MACHINE`."""
    try:
        _settle(batch, events, dead, last)
    finally:
        for letter in batch.dead:
            log.error(
                "dead_letter",
                sequence=letter.sequence,
                subject=letter.subject,
                projection=letter.projection,
                error=letter.error,
            )
    return batch.dead


def _settle(batch: Applying, events: list[Stored], dead: list[DeadLetter], last: int) -> None:
    """Commit `events` and `dead` up to `last`, isolating the events that fail."""
    while True:
        if batch.halt and dead:
            first = dead[0].sequence
            _settle(batch, [e for e in events if e.sequence < first], [], first - 1)
            raise Poisoned(f"sequence {first}: {dead[0].error}")
        try:
            if last > batch.checkpoint():
                batch.commit(batch.projections, events, last, dead)
            batch.dead.extend(dead)
            return
        except MACHINE:
            raise
        except Exception as exc:  # from the data: isolate the event that raises it
            found = _blame(exc, events)
            if found is None:
                if not events:
                    raise
                middle = events[len(events) // 2 - 1].sequence
                left = [d for d in dead if d.sequence <= middle]
                _settle(batch, [e for e in events if e.sequence <= middle], left, middle)
                events = [e for e in events if e.sequence > middle]
                dead = [d for d in dead if d.sequence > middle]
                continue
        culprit, projection, error = found
        # Every event before the culprit passed every projection: commit them as they are.
        before = [e for e in events if e.sequence < culprit]
        _settle(batch, before, [d for d in dead if d.sequence < culprit], culprit - 1)
        if batch.halt:
            raise Poisoned(f"sequence {culprit}: cannot apply: {error}"[:2000])
        event = next(e for e in events if e.sequence == culprit)
        letter = _letter(batch, culprit, event.event, projection, error)
        events = [e for e in events if e.sequence > culprit]
        dead = [d for d in dead if d.sequence > culprit]
        if projection == EVERY:
            dead = [letter, *dead]
        else:  # only that projection misses it: every other one applies it now
            _alone(batch, event, [letter])


def _alone(batch: Applying, event: Stored, letters: list[DeadLetter]) -> None:
    """Commit `event` alone, applied by every projection but those of `letters` (the
    ones that raised on it); a further projection raising joins them (each once)."""
    while True:
        skip = {letter.projection for letter in letters}
        if EVERY in skip:
            letters = [letter for letter in letters if letter.projection == EVERY]
        try:
            projections = [p for p in batch.projections if p.name not in skip]
            batch.commit(projections, [event] if EVERY not in skip else [], event.sequence, letters)
            batch.dead.extend(letters)
            return
        except MACHINE:
            raise
        except Exception as exc:
            if EVERY in skip:
                raise
            found = _blame(exc, [event])
            assert found is not None  # one event is always blamed
            projection = EVERY if found[1] in skip else found[1]
            letters.append(_letter(batch, event.sequence, event.event, projection, found[2]))


def _letter(batch: Applying, sequence: int, event: Any, projection: str, error: str) -> DeadLetter:
    subject = batch.subjects.get(sequence) or _SUBJECTS.events(
        event.aggregate_type, event.aggregate_id
    )
    text = f"cannot apply: {error}"[:2000]
    return DeadLetter(sequence, subject, text, codec.encode(event), projection)


def _blame(exc: Exception, events: Sequence[Stored]) -> tuple[int, str, str] | None:
    """(sequence, projection or EVERY, error) of the event `exc` is due to, if known."""
    if isinstance(exc, Unapplicable) and any(e.sequence == exc.sequence for e in events):
        return exc.sequence, exc.projection or EVERY, exc.error
    if len(events) != 1:
        return None
    if isinstance(exc, Failed):
        return events[0].sequence, exc.projection, str(exc)
    if isinstance(exc, Unapplicable) and exc.projection:  # a hook naming another sequence
        return events[0].sequence, exc.projection, f"{exc.projection}: {exc.error}"
    return events[0].sequence, EVERY, f"{type(exc).__name__}: {exc}"

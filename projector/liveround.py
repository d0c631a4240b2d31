"""A live round: every due catalogue key of a gateway's live queries in one transaction.

Issue 17: a gateway evaluated each due live query with a request of its own (a NATS round
trip, a hop onto the named-query threads, a `BEGIN` and a checkpoint read each, 10 per
batch on the bench). A round (`LiveRound` on `<prefix>.query.live`) carries them all: one
request, one hop, one read-only transaction, one checkpoint read; the answers are as of
that checkpoint.

The reply is `{"answers": [part, ...]}`, one part per key in the request's order: the
reply of a live evaluation (`{"sequence", "result", "reads", "truncated"?}`, bounded by
`max_bytes` as any answer, `answers.reply`) or `{"error": {"code", "message", "detail"}}`
for that key alone (404/422 unknown query or bad parameters, 413 too large, a failing
statement): one failing key fails only itself. After a failing statement the transaction
is begun again (DuckDB refuses more work in an aborted one), so the later keys may be as
of a newer checkpoint; each part says its own. A part that would take the reply past
`max_reply` bytes (the NATS message), or whose turn comes after the round's time limit,
is a 503 `Unavailable`: its gateway asks again in its next round. A round runs its keys
one after another on one thread: its cost is bounded by the gateway's distinct keys
(`live_max_queries`) and its time limit (no key starts past it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import msgspec

from common.catalogue import Catalogue
from common.errors import Internal, IronstarError, Unavailable
from common.messages import LiveKey
from projector import answers
from projector.projection import answer
from projector.readmodel import ReadModel, checkpoint_of

FULL = "the round's reply is full; asked again next round"
LATE = "the round's time limit passed before this key; asked again next round"
ReadsOf = Callable[[ReadModel, str], frozenset[str]]  # (model, SQL text) -> tables it reads
EVERY = ("*",)
_json = msgspec.json.Encoder()


def evaluate(
    model: ReadModel,
    catalogue: Catalogue,
    keys: Sequence[LiveKey],
    reads_of: ReadsOf,
    max_bytes: int,
    max_reply: int,
    deadline: float = float("inf"),
) -> bytes:
    """The reply to a round of `keys` (see the module's doc), at most `max_reply` bytes plus
    one deferral per key; keys not begun by `deadline` (`time.monotonic()`, the round's
    time limit) are deferred. Runs on a named-query thread, never the apply thread."""
    cursor = model.con.cursor()
    parts: list[bytes] = []
    size = len(b'{"answers":[]}')
    try:
        sequence = _begin(cursor)
        for key in keys:
            if time.monotonic() > deadline:
                parts.append(_error(Unavailable(LATE, retry_after=0)))
                continue
            try:
                part = _one(model, catalogue, cursor, sequence, key, reads_of, max_bytes)
            except IronstarError as exc:
                part = _error(exc)
            except Exception as exc:  # a failing statement or app code: this key only
                failed = f"the query {key.projection}.{key.name} failed: {exc}"
                part = _error(Internal(failed[:1000]))
                sequence = _begin(cursor, again=True)  # DuckDB aborted the transaction
            if size + len(part) + 1 > max_reply:
                part = _error(Unavailable(FULL, retry_after=0))
            size += len(part) + 1
            parts.append(part)
    finally:
        cursor.close()  # rolls the read-only transaction back
    return b'{"answers":[' + b",".join(parts) + b"]}"


def _begin(cursor: duckdb.DuckDBPyConnection, again: bool = False) -> int:
    """A read-only transaction on `cursor` (`again`: after rolling back the failed one);
    the checkpoint it sees."""
    if again:
        cursor.execute("ROLLBACK")
    cursor.execute("BEGIN TRANSACTION READ ONLY")
    return checkpoint_of(cursor)


def _one(
    model: ReadModel,
    catalogue: Catalogue,
    cursor: duckdb.DuckDBPyConnection,
    sequence: int,
    key: LiveKey,
    reads_of: ReadsOf,
    max_bytes: int,
) -> bytes:
    """One key's live reply as of `sequence` (the transaction's checkpoint)."""
    params = catalogue.params(key.projection, key.name, key.params)  # 404 / 422
    query = catalogue.query(key.projection, key.name)
    projection = model.projections.get(key.projection)
    if projection is None:
        known = ", ".join(model.projections)
        raise Internal(f"this replica has no projection {key.projection!r}; it has {known}")
    result: Any = answer(cursor, projection.queries[key.name], params)
    reads = reads_of(model, query.sql) if query.sql and query.run is None else frozenset(EVERY)
    return answers.reply(sequence, result, max_bytes, {"reads": sorted(reads)})


def _error(exc: IronstarError) -> bytes:
    return _json.encode({"error": exc.to_reply()})

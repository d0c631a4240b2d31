"""Catch-up batches staged in the feed process (projector/prestage.py): a read model built
from them is the one the projector builds decoding every batch itself, and whatever the
feed process could not stage, or the projector cannot commit as staged, takes the
projector's own path, dead letters and all."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from common import catalogue
from common import envelope as codec
from common.app import Projection
from common.catalogue import Catalogue
from common.envelope import Envelope
from common.settings import app_name
from projector import replica as replicas
from projector.prestage import Prestaged, Received, app_of, completed, prestage, received
from projector.readmodel import ReadModel
from tests.integration.test_projector_apply import _deliveries, _event

TABLES = ("todo_lists", "todo_changes", "users", "stream_counts", "aggregate_pending",
          "aggregate_states", "dead_letters", "checkpoint")  # fmt: skip
Delivery = tuple[int, str, bytes]


def _history(count: int) -> list[Envelope]:
    app = catalogue.current().app
    assert app.events is not None
    return list(app.events(count, 1))


def _handed_over(deliveries: list[Delivery], share: int = 100) -> Received | None:
    """As the feed process stages its `share` (percent) of a batch, and the projector reads
    it back through msgpack and stages the rest."""
    staged = prestage(app_name(), deliveries[: max(1, len(deliveries) * share // 100)])
    assert staged is not None
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(staged), type=Prestaged)
    return completed(wire, deliveries)


def _build(path: Path, deliveries: list[Delivery], size: int, staged: bool) -> ReadModel:
    """A read model of `deliveries` applied in batches of `size`, staged (by the feed
    process a share of each batch from 10 to 100 %) or decoded."""
    model = ReadModel(path)
    for start in range(0, len(deliveries), size):
        batch = deliveries[start : start + size]
        share = 100 - 10 * (start // size % 10)
        decoded = _handed_over(batch, share) if staged else None
        replicas.apply(model, batch, batch[-1][0], halt=False, decoded=decoded)
    return model


def _tables(model: ReadModel) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, but when a dead letter was recorded."""
    columns = {"dead_letters": "sequence, subject, error, data, projection"}
    return {
        t: model.con.execute(f"SELECT {columns.get(t, '*')} FROM {t} ORDER BY ALL").fetchall()
        for t in TABLES
    }


class Counted:
    """How many batches a read model applied by its envelopes' path (`ReadModel.apply`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decoded = 0
        real = ReadModel.apply

        def apply(model: ReadModel, *args: Any, **kwargs: Any) -> Any:
            self.decoded += 1
            return real(model, *args, **kwargs)

        monkeypatch.setattr(ReadModel, "apply", apply)


def test_a_read_model_built_from_staged_batches_is_the_one_built_from_decoded_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = codec.new_envelope(  # an older schema: upcast in the feed process, as here
        "todo_list", "old", 1, "todo_added", {"todo_id": "t", "title": "from schema 1"},
        occurred_at="2026-01-01T00:00:00.000Z",
    )  # fmt: skip
    deliveries = _deliveries([*_history(4_000), old])
    decoded = _build(tmp_path / "decoded.duckdb", deliveries, 700, staged=False)
    counted = Counted(monkeypatch)
    staged = _build(tmp_path / "staged.duckdb", deliveries, 700, staged=True)
    assert counted.decoded == 0  # every batch committed as the feed process staged it
    assert _tables(staged) == _tables(decoded)
    assert staged.checkpoint == decoded.checkpoint == len(deliveries)
    text = staged.con.execute("SELECT text FROM todos WHERE list_id = 'old'").fetchall()
    assert text == [("from schema 1",)]
    # the next batch's first event is a new command or not as the checkpoint's says
    assert staged.con.execute("SELECT command_id FROM checkpoint").fetchall() == (
        decoded.con.execute("SELECT command_id FROM checkpoint").fetchall()
    )


def _not_an_envelope(deliveries: list[Delivery]) -> list[Delivery]:
    sequence, subject, _ = deliveries[5]
    return [*deliveries[:5], (sequence, subject, b'{"not": "an envelope"}'), *deliveries[6:]]


def _on_another_subject(deliveries: list[Delivery]) -> list[Delivery]:
    sequence, _, body = deliveries[5]
    return [*deliveries[:5], (sequence, "x.events.todo_list.other", body), *deliveries[6:]]


def _payload_not_fitting(deliveries: list[Delivery]) -> list[Delivery]:
    sequence, subject, body = deliveries[5]
    envelope = codec.decode(body)
    wrong = msgspec.structs.replace(envelope, payload={"unexpected": [1, 2]})
    return [*deliveries[:5], (sequence, subject, codec.encode(wrong)), *deliveries[6:]]


@pytest.mark.parametrize("spoil", [_not_an_envelope, _on_another_subject, _payload_not_fitting])
def test_a_batch_the_feed_process_cannot_stage_whole_is_left_to_the_projector(
    spoil: Any,
) -> None:
    deliveries = _deliveries(_history(50))
    assert prestage(app_name(), deliveries) is not None
    assert prestage(app_name(), spoil(deliveries)) is None


def _version_repeated(events: list[Envelope]) -> tuple[list[Envelope], int]:
    first = next(e for e in events if e.aggregate_type == "todo_list")
    repeat = codec.new_envelope(  # version 1 of a list again, around the writer
        first.aggregate_type, first.aggregate_id, 1, "todo_added",
        {"todo_id": "again", "text": "again"}, schema=2, occurred_at=first.occurred_at,
    )  # fmt: skip
    return [*events[:300], repeat, *events[300:]], 301


def _refused_by_evolve(events: list[Envelope]) -> tuple[list[Envelope], int]:
    return (
        [
            _event("todo_list", "z", 1, "todo_added", todo_id="t", text="one"),
            *events[:300],
            _event("todo_list", "z", 2, "todo_added", todo_id="t", text="twice"),  # decide refuses
            *events[300:],
        ],
        302,
    )


@pytest.mark.parametrize("spoil", [_version_repeated, _refused_by_evolve])
def test_a_staged_batch_the_versions_check_refuses_is_isolated_by_the_projector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spoil: Any
) -> None:
    events, culprit = spoil(_history(600))
    deliveries = _deliveries(events)
    decoded = _build(tmp_path / "decoded.duckdb", deliveries, 200, staged=False)
    counted = Counted(monkeypatch)
    staged = _build(tmp_path / "staged.duckdb", deliveries, 200, staged=True)
    assert counted.decoded == 1  # the batch holding it, refused as staged, and only that one
    assert _tables(staged) == _tables(decoded)
    letters = staged.con.execute("SELECT sequence, projection FROM dead_letters").fetchall()
    assert letters == [(culprit, "*")]


def _typed_list(pre: Prestaged, change: Any) -> Prestaged:
    kind, data = pre.typed[0]
    events = msgspec.msgpack.decode(data)
    return msgspec.structs.replace(pre, typed=[(kind, msgspec.msgpack.encode(change(events)))])


@pytest.mark.parametrize(
    "spoil",
    [
        lambda pre: msgspec.structs.replace(pre, table=pre.table[: len(pre.table) // 2]),
        lambda pre: msgspec.structs.replace(pre, table=b"not arrow"),
        lambda pre: msgspec.structs.replace(pre, typed=pre.typed[1:]),  # a kind's events gone
        lambda pre: _typed_list(pre, lambda events: events[1:]),  # one event short
        lambda pre: _typed_list(pre, lambda events: [*events, events[0]]),  # one too many
        lambda pre: _typed_list(pre, lambda events: [{"x": 1}, *events[1:]]),  # not an event
        lambda pre: msgspec.structs.replace(pre, typed=[("nobody", b"\x90"), *pre.typed]),
        lambda pre: msgspec.structs.replace(pre, app="no.such.app"),
    ],
)
def test_a_staged_batch_that_does_not_read_back_whole_is_decoded_instead(spoil: Any) -> None:
    deliveries = _deliveries(_history(400))
    staged = prestage(app_name(), deliveries)
    assert staged is not None and len(staged.typed) == 2
    assert received(staged) is not None
    assert received(spoil(staged)) is None


def test_a_staged_batch_overlapping_the_checkpoint_is_not_taken_as_staged(
    tmp_path: Path,
) -> None:
    deliveries = _deliveries(_history(300))
    model = ReadModel(tmp_path / "r.duckdb")
    replicas.apply(model, deliveries[:100], 100, halt=True)
    again = _handed_over(deliveries[50:])  # redelivered from 51: applied up to 100 already
    assert again is not None
    assert not model.apply_staged(again.batch, 300)
    assert not model.apply_staged(again.batch, 299)  # not the batch's last sequence
    assert model.checkpoint == 100
    replicas.apply(model, deliveries[50:], 300, halt=True, decoded=again)  # decoded, once each
    assert model.checkpoint == 300
    expected = _build(tmp_path / "all.duckdb", deliveries, 300, staged=False)
    assert _tables(model) == _tables(expected)


def test_only_a_read_model_of_the_process_app_with_sql_projections_is_staged(
    tmp_path: Path,
) -> None:
    current = catalogue.current()
    other = Catalogue(dataclasses.replace(current.app))  # another app object: not staged
    hook = Projection(name="hooked", version=1, tables=(), ddl=(), apply=lambda cursor, b: None)
    with capture_logs() as logs:
        assert app_of(ReadModel(tmp_path / "own.duckdb")) == app_name()
        assert app_of(ReadModel(tmp_path / "other.duckdb", catalogue=other)) == ""
        projections = (*current.projections.values(), hook)
        assert app_of(ReadModel(tmp_path / "hook.duckdb", projections=projections)) == ""
    reasons = [entry["reason"] for entry in logs if entry["event"] == "staging_off"]
    assert reasons == [
        f"the read model runs another app than {app_name()}",
        "projections hooked are Python hooks",
    ]


@pytest.mark.parametrize("spoil", [_not_an_envelope, _on_another_subject, _payload_not_fitting])
def test_a_batch_whose_part_left_to_the_projector_cannot_be_staged_is_decoded_whole(
    spoil: Any,
) -> None:
    deliveries = _deliveries(_history(50))
    head = prestage(app_name(), deliveries[:4])  # the spoiled event (the 6th) is the rest's
    assert head is not None
    assert completed(head, deliveries) is not None
    assert completed(head, spoil(deliveries)) is None


def test_a_staged_part_that_is_not_the_batch_head_is_not_taken() -> None:
    deliveries = _deliveries(_history(50))
    assert prestage(app_name(), []) is None
    head = prestage(app_name(), deliveries[1:20])
    assert head is not None
    assert completed(head, deliveries) is None
    assert completed(head, deliveries[1:]) is not None

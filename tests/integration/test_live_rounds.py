"""A live round on a real DuckDB file (`projector/liveround.py`): every key answered in
one transaction as of one checkpoint, one failing key failing only itself, a reply bounded
in bytes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from common import catalogue
from common.messages import LiveKey
from projector import liveround
from projector.dependencies import tables_read
from projector.readmodel import ReadModel
from projector.replica import apply
from tests.integration.test_projector_apply import _deliveries, _event

LIST = LiveKey(projection="todo_lists", name="get", params={"list_id": "l"})
USERS = LiveKey(projection="user_profiles", name="list")


@pytest.fixture
def model(tmp_path: Path) -> ReadModel:
    model = ReadModel(tmp_path / "r.duckdb")
    events = [
        _event("todo_list", "l", 1, "todo_added", todo_id="t", text="one"),
        _event("user_profile", "u", 1, "user_registered", name="Ann", email="a@x.io"),
    ]
    apply(model, _deliveries(events), 2, halt=True)
    return model


def reads_of(model: ReadModel, text: str) -> frozenset[str]:
    return tables_read(model.con.cursor(), text)


def round_of(model: ReadModel, *keys: LiveKey, max_reply: int = 1 << 20) -> list[Any]:
    reply = liveround.evaluate(model, catalogue.current(), keys, reads_of, 64_000, max_reply)
    assert len(reply) <= max_reply + 200 * len(keys)
    answers: list[Any] = json.loads(reply)["answers"]
    assert len(answers) == len(keys)
    return answers


def test_every_key_is_answered_as_of_the_same_checkpoint_with_the_tables_it_reads(
    model: ReadModel,
) -> None:
    listed, users = round_of(model, LIST, USERS)
    assert listed["sequence"] == users["sequence"] == model.checkpoint == 2
    assert [t["text"] for t in listed["result"]["items"]] == ["one"]
    assert listed["reads"] == ["todo_lists"] and users["reads"] == ["users"]
    assert [u["name"] for u in users["result"]] == ["Ann"]


def test_an_unknown_query_or_bad_parameters_fail_only_their_own_key(model: ReadModel) -> None:
    unknown = LiveKey(projection="todo_lists", name="nope")
    bad = LiveKey(projection="todo_lists", name="get", params={"list_id": ["not", "text"]})
    first, missing, wrong, last = round_of(model, LIST, unknown, bad, USERS)
    assert missing["error"]["code"] == "not_found" and "nope" in missing["error"]["message"]
    assert wrong["error"]["code"] == "invalid"
    assert first["sequence"] == last["sequence"] == 2
    assert [u["name"] for u in last["result"]] == ["Ann"]


def test_a_failing_statement_fails_its_key_and_the_next_keys_still_answer(
    model: ReadModel,
) -> None:
    model.con.execute("DROP TABLE todo_lists CASCADE")  # the list's query now fails in DuckDB
    listed, users = round_of(model, LIST, USERS)
    assert listed["error"]["code"] == "internal"
    assert "todo_lists.get" in listed["error"]["message"]
    assert users["sequence"] == 2 and [u["name"] for u in users["result"]] == ["Ann"]


def test_keys_past_the_reply_bound_are_deferred_to_the_next_round(model: ReadModel) -> None:
    one = len(json.dumps(round_of(model, USERS)[0]))
    answers = round_of(model, USERS, USERS, USERS, max_reply=2 * one + 40)
    assert all("result" in answer for answer in answers[:2])
    assert answers[2]["error"]["code"] == "unavailable"
    assert "next round" in answers[2]["error"]["message"]


def test_keys_whose_turn_comes_after_the_rounds_time_limit_are_deferred(
    model: ReadModel,
) -> None:
    past = time.monotonic() - 1
    reply = liveround.evaluate(
        model, catalogue.current(), [LIST, USERS], reads_of, 64_000, 1 << 20, past
    )
    answers = json.loads(reply)["answers"]
    assert [answer["error"]["code"] for answer in answers] == ["unavailable", "unavailable"]
    assert "time limit" in answers[0]["error"]["message"]

"""`format=datastar` answers are JSON merge patches (`gateway/live/answer.py`,
`gateway/live/follow.py`): a member that vanished from the answer is sent as null, so a
client applying the patches holds exactly the newest answer, also after skipped answers;
a failed evaluation patches the signal's `error`, which the next answer clears."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.live.answer import Answer, Subscriber, vanished
from gateway.live.follow import _answers, failure, renderer, target


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386, as Datastar applies `datastar-patch-signals`."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = merge(out.get(name), value)
    return out


def signals(answer: Answer) -> Any:
    _, render = renderer("datastar", None)
    return patched(render(answer))


def patched(frame: bytes) -> Any:
    """The signals a `datastar-patch-signals` frame patches (AssertionError for another)."""
    lines = frame.decode().splitlines()
    assert "event: datastar-patch-signals" in lines, lines
    line = next(x for x in lines if x.startswith("data: signals "))
    return json.loads(line.removeprefix("data: signals "))


def answers(bodies: list[dict[str, Any]]) -> list[Answer]:
    out: list[Answer] = []
    for n, body in enumerate(bodies):
        gone, seen = vanished(out[-1].seen if out else {}, body)
        out.append(Answer(n, n, body, gone=gone, seen=seen))
    return out


def test_an_answer_that_stops_being_truncated_clears_the_truncated_signal() -> None:
    cut = {"sequence": 1, "result": {"items": [1]}, "truncated": {"returned": 1, "total": 2}}
    whole = {"sequence": 2, "result": {"items": [1, 2]}}
    held = merge({}, signals(answers([cut])[0]))
    held = merge(held, signals(answers([cut, whole])[1]))
    assert held == {"live": whole}


def test_a_client_that_resumes_holding_a_truncated_answer_is_cleared_by_its_first_frame() -> None:
    stale = {"live": {"sequence": 1, "result": 1, "truncated": {"total": 9}}}
    whole = {"sequence": 2, "result": 2}
    assert merge(stale, signals(answers([whole])[0])) == {"live": whole}


def test_members_of_an_object_a_skipped_answer_replaced_are_cleared() -> None:
    made = answers([{"result": {"a": 1}}, {"result": 1}, {"result": {}}])
    held = merge(merge({}, signals(made[0])), signals(made[2]))  # the second was skipped
    assert held == {"live": {"result": {}}}


values = st.recursive(
    st.none() | st.integers(0, 3),
    lambda inner: st.dictionaries(st.sampled_from("abcd"), inner, max_size=3),
    max_leaves=8,
)
bodies = st.dictionaries(st.sampled_from(["result", "truncated", "x"]), values, max_size=3)


@given(st.lists(bodies, min_size=1, max_size=6), st.lists(st.booleans(), max_size=6))
def test_a_client_that_applies_any_subset_of_the_frames_holds_the_newest_answer(
    sequence: list[dict[str, Any]], skips: list[bool]
) -> None:
    sequence = [{k: v for k, v in body.items() if v is not None} for body in sequence]
    made, held = answers(sequence), dict[str, Any]()
    for answer, skipped in zip(made[:-1], skips, strict=False):
        if not skipped:  # a slow client skips answers (latest wins)
            held = merge(held, signals(answer))
    held = merge(held, signals(made[-1]))
    assert held == merge({}, {"live": made[-1].body})


async def test_a_failed_evaluation_patches_the_error_signal_and_the_next_answer_clears_it() -> None:
    """Through the feed itself: an answer, an evaluation's failure, then an answer with the
    same result (written all the same: it ends the error)."""
    style, render = renderer("datastar", "todos")
    me = Subscriber(interval_s=0.0)
    body = _answers(me, style, render, b"", 15, None, asyncio.Event(), lambda: None)
    assert await anext(body) == b""  # the head
    first = {"sequence": 3, "result": {"active": 2}}
    me.offer(Answer(3, 0, first))
    held = merge({}, patched(await anext(body)))
    me.fail("internal", "the query todo_lists.get failed")
    frame = await anext(body)
    assert not frame.startswith(b"id:") and b"\nid:" not in frame  # not a resume point
    held = merge(held, patched(frame))
    error = {"code": "internal", "message": "the query todo_lists.get failed"}
    assert held == {"todos": {**first, "error": error}}  # the answer held stays beside it
    me.offer(Answer(4, 0, {"sequence": 4, "result": {"active": 2}}))
    held = merge(held, patched(await anext(body)))
    assert held == {"todos": {"sequence": 4, "result": {"active": 2}}}
    await body.aclose()


def test_a_client_that_resumes_holding_an_error_is_cleared_by_its_first_answer() -> None:
    stale = {"live": {"sequence": 1, "result": 1, "error": {"code": "internal"}}}
    assert merge(stale, signals(answers([{"sequence": 2, "result": 2}])[0])) == {
        "live": {"sequence": 2, "result": 2}
    }


def test_the_plain_format_tells_a_failure_as_an_error_event() -> None:
    error = {"code": "payload_too_large", "message": "the answer is over 1000000 bytes"}
    assert failure("json", error) == b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"


def test_the_signals_a_datastar_get_sends_are_not_taken_for_the_querys_parameters() -> None:
    """Datastar's `@get` sends its signals as the `datastar` query parameter: a query whose
    parameters forbid unknown fields (`stream.totals`), or SQL (no parameters), still
    follows, with the same key as without them."""
    signals = {"datastar": '{"live":{}}'}
    assert target("stream.totals", None, signals) == target("stream.totals", None, {})
    assert target(None, "SELECT 1", signals) == target(None, "SELECT 1", {})

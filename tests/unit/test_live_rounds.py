"""The gateway's live rounds (`gateway/live/rounds.py`): keys due together go in one
request, keys due while it runs join the next, a key's error is raised to it alone."""

from __future__ import annotations

import asyncio
import json

import pytest

from common.errors import NotFound, Timeout, Unavailable
from common.messages import LiveKey
from gateway.live.rounds import Rounds


class Projector:
    """Answers each round with one part per key (an error for a key named `bad`)."""

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.entered = asyncio.Event()  # a round reached the projector

    async def send(self, body: bytes, left_s: float) -> bytes:
        request = json.loads(body)
        self.rounds.append([key["name"] for key in request["keys"]])
        self.entered.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        parts = [
            {"error": {"code": "not_found", "message": "no such query", "detail": {}}}
            if key["name"] == "bad"
            else {"sequence": request["min_seq"], "result": key["name"], "reads": ["t"]}
            for key in request["keys"]
        ]
        return json.dumps({"answers": parts}).encode()


def key(name: str) -> LiveKey:
    return LiveKey(projection="p", name=name)


def announced() -> Rounds:
    """Rounds of a hub that heard a replica announce every sequence these tests ask for."""
    rounds = Rounds()
    rounds.heard = 1_000_000
    return rounds


async def test_keys_due_together_go_in_one_request_as_of_the_highest_min_seq() -> None:
    rounds, projector = announced(), Projector()
    replies = await asyncio.gather(
        *(rounds.ask(projector.send, key(f"q{n}"), n, 5.0) for n in range(10))
    )
    assert projector.rounds == [[f"q{n}" for n in range(10)]]
    assert [json.loads(reply)["result"] for reply in replies] == [f"q{n}" for n in range(10)]
    assert {json.loads(reply)["sequence"] for reply in replies} == {9}


async def test_keys_due_while_a_round_runs_join_the_next_one() -> None:
    rounds, projector = announced(), Projector()
    projector.gate.clear()
    first = asyncio.create_task(rounds.ask(projector.send, key("a"), 1, 5.0))
    await projector.entered.wait()
    later = [asyncio.create_task(rounds.ask(projector.send, key(n), 2, 5.0)) for n in "bc"]
    await asyncio.sleep(0.01)  # five times the gathering window: the next round would be out
    assert projector.rounds == [["a"]], "nothing else was sent while the round ran"
    projector.gate.set()
    await asyncio.gather(first, *later)
    assert projector.rounds == [["a"], ["b", "c"]]


async def test_a_failing_key_fails_only_itself() -> None:
    rounds, projector = announced(), Projector()
    good, bad = await asyncio.gather(
        rounds.ask(projector.send, key("good"), 1, 5.0),
        rounds.ask(projector.send, key("bad"), 1, 5.0),
        return_exceptions=True,
    )
    assert isinstance(bad, NotFound) and bad.message == "no such query"
    assert isinstance(good, bytes) and json.loads(good)["result"] == "good"
    assert len(projector.rounds) == 1


async def test_a_failed_round_fails_each_of_its_keys_and_the_next_round_goes_out() -> None:
    rounds, projector = announced(), Projector()
    projector.fail = Unavailable("no projector is running", retry_after=1)
    for outcome in await asyncio.gather(
        *(rounds.ask(projector.send, key(n), 1, 5.0) for n in "ab"), return_exceptions=True
    ):
        assert isinstance(outcome, Unavailable)
    projector.fail = None
    assert json.loads(await rounds.ask(projector.send, key("c"), 1, 5.0))["result"] == "c"
    assert projector.rounds == [["a", "b"], ["c"]]


async def test_a_key_whose_evaluation_left_is_not_asked_for() -> None:
    rounds, projector = announced(), Projector()
    projector.gate.clear()
    first = asyncio.create_task(rounds.ask(projector.send, key("a"), 1, 5.0))
    await projector.entered.wait()
    gone = asyncio.create_task(rounds.ask(projector.send, key("gone"), 1, 5.0))
    kept = asyncio.create_task(rounds.ask(projector.send, key("kept"), 1, 5.0))
    await asyncio.sleep(0)  # both are waiting for the next round
    gone.cancel()
    projector.gate.set()
    await asyncio.gather(first, kept)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert projector.rounds == [["a"], ["kept"]]


async def test_a_key_whose_min_seq_is_not_announced_yet_does_not_hold_up_the_round() -> None:
    rounds, projector = Rounds(), Projector()
    await rounds.hear(5)
    ahead = asyncio.create_task(rounds.ask(projector.send, key("ahead"), 1_000, 5.0))
    due = await asyncio.gather(*(rounds.ask(projector.send, key(n), 5, 5.0) for n in "ab"))
    assert [json.loads(reply)["result"] for reply in due] == ["a", "b"]
    assert not ahead.done() and projector.rounds == [["a", "b"]]  # it waits at the gateway
    await rounds.hear(1_000)  # a replica announced it: now it is asked, in a round
    assert json.loads(await ahead)["sequence"] == 1_000
    assert projector.rounds == [["a", "b"], ["ahead"]]


async def test_a_far_ahead_min_seq_never_reaches_a_projector_and_is_a_504_at_its_deadline() -> None:
    """attack17b B4: asked of the projector, such keys took its round handlers for their
    whole wait; now many of them cost no request, and the others' rounds go on."""
    rounds, projector = Rounds(), Projector()
    await rounds.hear(5)
    far = [
        asyncio.create_task(rounds.ask(projector.send, key(f"far{n}"), 10**9, 0.3))
        for n in range(24)
    ]
    assert json.loads(await rounds.ask(projector.send, key("view"), 5, 5.0))["result"] == "view"
    for task in far:
        with pytest.raises(Timeout):
            await task
    assert projector.rounds == [["view"]]


async def test_before_any_announcement_a_key_is_asked_of_a_projector_one_at_a_time() -> None:
    rounds, projector = Rounds(), Projector()
    projector.gate.clear()
    first = asyncio.create_task(rounds.ask(projector.send, key("one"), 7, 5.0))
    second = asyncio.create_task(rounds.ask(projector.send, key("two"), 7, 5.0))
    await projector.entered.wait()
    assert projector.rounds == [["one"]]  # the second waits for the first
    projector.gate.set()
    await asyncio.gather(first, second)
    assert projector.rounds == [["one"], ["two"]]

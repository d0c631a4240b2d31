"""Ack subjects and pull-status replies, read once for the gateway and the projector
(`common/jetstream.py`), against nats-py's own reading of the same subjects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from common.jetstream import (
    CONFLICT,
    HEARTBEAT,
    NO_MESSAGES,
    NO_RESPONDERS,
    REQUEST_TIMEOUT,
    AckPosition,
    ack_position,
    is_delivery,
    pull_status,
)

names = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
counts = st.integers(min_value=0, max_value=2**63 - 1)


@given(names, names, counts, counts, counts, counts, counts, st.sampled_from(["_", "hub"]),
       st.booleans())  # fmt: skip
def test_both_forms_of_an_ack_subject_give_the_position_nats_py_reads(
    stream: str, consumer: str, delivered: int, sseq: int, dseq: int, ts: int, pending: int,
    domain: str, random_token: bool,
) -> None:  # fmt: skip
    numbers = f"{delivered}.{sseq}.{dseq}.{ts}.{pending}"
    v1 = f"$JS.ACK.{stream}.{consumer}.{numbers}"
    v2 = f"$JS.ACK.{domain}.ACCHASH.{stream}.{consumer}.{numbers}" + (
        ".r4nd" if random_token else ""
    )
    expected = AckPosition(stream, consumer, delivered, sseq, dseq, ts, pending)
    for reply in (v1, v2):
        assert is_delivery(reply)
        assert ack_position(reply) == expected
        meta = Msg(_client=None, subject="s", reply=reply).metadata  # type: ignore[arg-type]
        assert (meta.sequence.stream, meta.sequence.consumer, meta.num_pending) == (
            sseq, dseq, pending,
        )  # fmt: skip


@pytest.mark.parametrize(
    "reply",
    [
        "_INBOX.abc.1",  # a status reply's subject
        "$JS.ACK.S.C.1.2.3.4",  # a token short
        "$JS.ACK.S.C.1.2.3.4.5.6",  # 10 tokens: neither form
        "$JS.ACK.S.C.1.x.3.4.5",  # not a number
        "$JS.ACKS.S.C.1.2.3.4.5",
    ],
)
def test_anything_but_an_ack_subject_is_refused_rather_than_misread(reply: str) -> None:
    with pytest.raises(ValueError):
        ack_position(reply)


def test_a_status_reply_is_not_a_delivery() -> None:
    assert not is_delivery(None) and not is_delivery("") and not is_delivery("_INBOX.x.y")


def test_pull_status_replies_say_what_ended_the_request() -> None:
    deleted = pull_status({"Status": CONFLICT, "Description": "Consumer Deleted"})
    assert deleted.consumer_deleted
    assert not pull_status(
        {"Status": CONFLICT, "Description": "Leadership Change"}
    ).consumer_deleted
    expired = pull_status({"Status": REQUEST_TIMEOUT, "Nats-Pending-Messages": "7"})
    assert (expired.code, expired.pending_messages) == (REQUEST_TIMEOUT, 7)
    assert pull_status({"Status": NO_MESSAGES}).pending_messages == 0
    assert pull_status(None).code == "" and pull_status({"Status": HEARTBEAT}).code == HEARTBEAT
    assert not pull_status({"Status": NO_RESPONDERS}).consumer_deleted


def test_a_pending_count_that_is_not_a_number_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError):
        pull_status({"Status": REQUEST_TIMEOUT, "Nats-Pending-Messages": "many"})

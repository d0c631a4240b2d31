"""The JetStream event store: read one aggregate's events, append with concurrency checks.

- Reading uses the stream's direct-get batch API on the aggregate's subject, so a writer
  catches up with one round trip per 256 events and no consumer.
- A single event is one publish carrying `Nats-Msg-Id` and
  `Nats-Expected-Last-Subject-Sequence`. Several events are one atomic batch (ADR-50):
  all are stored or none, and the first carries the expected sequence.
- Every publish that expects an ack is a request with a deadline (the request timeout).
  A publish whose ack is lost is retried with the same message
  ids; whatever the server answers then (a duplicate ack on a replicated stream, or 10071
  because our own write moved the subject on one server) makes the handler catch up and
  find its command already applied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from common import envelope as codec
from common.envelope import Envelope, Stored
from common.errors import StorageFull, Unavailable
from common.subjects import Subjects
from writer.eventstore import AggregateKey, WrongExpectedSequence, undecidable

log = structlog.get_logger()

READ_PAGE = 256
WRONG_LAST_SEQUENCE = 10071
WRONG_LAST_SEQUENCE_NO_NUMBER = 10164  # what a clustered stream answers during a leader change
BATCH_DUPLICATE_MSG_ID = 10201  # a retried atomic batch never answers duplicate=True
MOVED_ON = {WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_NO_NUMBER, BATCH_DUPLICATE_MSG_ID}
PUBLISH_ATTEMPTS = 3
OUT_OF_STORAGE = {10047, 10023}  # JetStream: insufficient (storage) resources
STORAGE_RETRY_AFTER_S = 5


class JetStreamEventStore:
    """The `EventStore` (writer/eventstore.py) on the JetStream stream `stream`.

    `timeout_s` bounds every request: each page of a read, each acknowledged publish.
    `on_retry` is called for each publish resent after a lost ack.
    """

    def __init__(
        self,
        nc: Client,
        stream: str,
        subjects: Subjects,
        timeout_s: float,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self.nc = nc
        self.on_retry = on_retry
        self.stream = stream
        self.subjects = subjects
        self.timeout_s = timeout_s
        self._direct = f"$JS.API.DIRECT.GET.{stream}"

    async def read(self, key: AggregateKey, after: int) -> list[Stored]:
        """The aggregate's events after sequence `after`, oldest first, `READ_PAGE` per
        round trip. Raises Undecidable at a message that is not a valid envelope of this
        aggregate; Unavailable when the stream answers an error or not within `timeout_s`."""
        subject = self.subjects.events(key.aggregate_type, key.aggregate_id)
        events: list[Stored] = []
        while True:
            page = await self._read_page(subject, key, after + 1)
            events.extend(page)
            if len(page) < READ_PAGE:
                return events
            after = page[-1].sequence

    async def _read_page(self, subject: str, key: AggregateKey, start: int) -> list[Stored]:
        """Up to `READ_PAGE` events of `subject` from sequence `start` (one direct get)."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            body = json.dumps({"seq": start, "next_by_subj": subject, "batch": READ_PAGE})
            await self.nc.publish(self._direct, body.encode(), reply=inbox)
            page: list[Stored] = []
            while True:
                msg = await sub.next_msg(timeout=self.timeout_s)
                headers = msg.headers or {}
                status = headers.get("Status")
                if status is not None:  # 204 end of batch, 404 nothing (more) on the subject
                    if status not in ("204", "404"):
                        raise Unavailable(f"reading {subject} failed: {status} {headers}")
                    return page
                page.append(self._stored(subject, key, msg))
                if len(page) == READ_PAGE:
                    return page
        except NatsTimeout:
            raise Unavailable(f"reading {subject} from the stream timed out; retry") from None
        finally:
            await sub.unsubscribe()

    @staticmethod
    def _stored(subject: str, key: AggregateKey, msg: Msg) -> Stored:
        """A direct-get reply as a stored event; Undecidable when it is no valid envelope."""
        sequence = int((msg.headers or {})["Nats-Sequence"])
        try:
            envelope = codec.decode_stored(msg.data, key.aggregate_type, key.aggregate_id)
        except codec.Undecodable as exc:
            log.error("event_unreadable", subject=subject, sequence=sequence, error=str(exc))
            raise undecidable(key, sequence, str(exc)) from None
        return Stored(sequence=sequence, event=envelope)

    async def append(
        self, envelopes: Sequence[Envelope], msg_ids: Sequence[str], expected: int
    ) -> int:
        """Publish the envelopes (one message, or one atomic batch) with the expected last
        subject sequence; the sequence of the last one. Raises WrongExpectedSequence,
        StorageFull (retry after `STORAGE_RETRY_AFTER_S`) or Unavailable, per the protocol;
        a publish whose ack is lost is resent with the same ids up to `PUBLISH_ATTEMPTS`
        times in all."""
        subject = self.subjects.events(envelopes[0].aggregate_type, envelopes[0].aggregate_id)
        bodies = [codec.encode(e) for e in envelopes]
        ack = await self._acknowledged(subject, bodies, msg_ids, expected)
        if "error" in ack:
            raise _refusal(ack["error"])
        if ack.get("duplicate"):
            raise WrongExpectedSequence("the command was appended before", int(ack["seq"]))
        return int(ack["seq"])

    async def _acknowledged(
        self, subject: str, bodies: list[bytes], msg_ids: Sequence[str], expected: int
    ) -> dict[str, Any]:
        """The stream's ack of the append, resending it after a lost ack."""
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                if len(bodies) == 1:
                    return await self._publish(subject, bodies[0], msg_ids[0], expected)
                return await self._publish_batch(subject, bodies, msg_ids, expected)
            except (NatsTimeout, NoRespondersError):
                # Same message ids again: the stream stores the events at most once.
                log.warning("append_ack_lost", subject=subject, attempt=attempt)
                self.on_retry()
        raise Unavailable(
            "the event stream did not acknowledge the append (its server may be "
            "down or out of disk space); resend the command with the same "
            "command_id (it will not be applied twice)",
            retry_after=1,
        )

    async def _publish(
        self, subject: str, body: bytes, msg_id: str, expected: int
    ) -> dict[str, Any]:
        headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Subject-Sequence": str(expected)}
        # A request, not `js.publish_async`: nats-py 2.16 raises an error ack inside its
        # reply callback, so that future would never resolve and only its deadline would fire.
        reply = await self.nc.request(subject, body, timeout=self.timeout_s, headers=headers)
        return _ack(reply)

    async def _publish_batch(
        self, subject: str, bodies: list[bytes], msg_ids: Sequence[str], expected: int
    ) -> dict[str, Any]:
        batch_id = hashlib.blake2b(msg_ids[0].encode(), digest_size=16).hexdigest()  # ≤ 64
        last = len(bodies)
        for index, body in enumerate(bodies, start=1):
            headers = {
                "Nats-Batch-Id": batch_id,
                "Nats-Batch-Sequence": str(index),
                "Nats-Msg-Id": msg_ids[index - 1],
            }
            if index == 1:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
            if index < last:
                await self.nc.publish(subject, body, headers=headers)
            else:
                headers["Nats-Batch-Commit"] = "1"
                reply = await self.nc.request(
                    subject, body, timeout=self.timeout_s, headers=headers
                )
                return _ack(reply)
        raise AssertionError("unreachable: a batch has at least one event")


def _refusal(error: dict[str, Any]) -> Exception:
    """What an error ack means for the writer (JetStream error codes above)."""
    if error.get("err_code") in MOVED_ON:
        return WrongExpectedSequence(error.get("description", ""))
    if error.get("err_code") in OUT_OF_STORAGE:
        return StorageFull(
            f"the event store is out of storage ({error.get('description')}); nothing "
            "was appended: retry once space is freed or its limits are raised",
            retry_after=STORAGE_RETRY_AFTER_S,
        )
    return Unavailable(f"the event stream refused the append: {error.get('description')}")


def _ack(reply: Msg) -> dict[str, Any]:
    """The JSON ack of a publish; Unavailable when it is not a JSON object."""
    result = json.loads(reply.data) if reply.data else {}
    if not isinstance(result, dict):
        raise Unavailable(f"unexpected reply from the event stream: {reply.data[:200]!r}")
    return result

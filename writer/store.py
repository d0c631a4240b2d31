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
from common.envelope import Envelope
from common.errors import StorageFull, Unavailable
from common.subjects import Subjects
from writer.handler import WrongExpectedSequence, undecidable

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
    def __init__(
        self,
        nc: Client,
        stream: str,
        subjects: Subjects,
        timeout: float,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self.nc = nc
        self.on_retry = on_retry
        self.stream = stream
        self.subjects = subjects
        self.timeout = timeout
        self._direct = f"$JS.API.DIRECT.GET.{stream}"

    async def read(
        self, aggregate_type: str, aggregate_id: str, after: int
    ) -> list[tuple[int, Envelope]]:
        subject = self.subjects.events(aggregate_type, aggregate_id)
        events: list[tuple[int, Envelope]] = []
        while True:
            page = await self._read_page(subject, (aggregate_type, aggregate_id), after + 1)
            events.extend(page)
            if len(page) < READ_PAGE:
                return events
            after = page[-1][0]

    async def _read_page(
        self, subject: str, key: tuple[str, str], start: int
    ) -> list[tuple[int, Envelope]]:
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            body = json.dumps({"seq": start, "next_by_subj": subject, "batch": READ_PAGE})
            await self.nc.publish(self._direct, body.encode(), reply=inbox)
            page: list[tuple[int, Envelope]] = []
            while True:
                msg = await sub.next_msg(timeout=self.timeout)
                headers = msg.headers or {}
                status = headers.get("Status")
                if status is not None:  # 204 end of batch, 404 nothing (more) on the subject
                    if status not in ("204", "404"):
                        raise Unavailable(f"reading {subject} failed: {status} {headers}")
                    return page
                sequence = int(headers["Nats-Sequence"])
                try:
                    page.append((sequence, codec.decode_stored(msg.data, *key)))
                except codec.Undecodable as exc:
                    log.error(
                        "event_unreadable", subject=subject, sequence=sequence, error=str(exc)
                    )
                    raise undecidable(*key, sequence, str(exc)) from None
                if len(page) == READ_PAGE:
                    return page
        except NatsTimeout:
            raise Unavailable(f"reading {subject} from the stream timed out; retry") from None
        finally:
            await sub.unsubscribe()

    async def append(
        self, envelopes: Sequence[Envelope], msg_ids: Sequence[str], expected: int
    ) -> int:
        subject = self.subjects.events(envelopes[0].aggregate_type, envelopes[0].aggregate_id)
        bodies = [codec.encode(e) for e in envelopes]
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                if len(bodies) == 1:
                    ack = await self._publish(subject, bodies[0], msg_ids[0], expected)
                else:
                    ack = await self._publish_batch(subject, bodies, msg_ids, expected)
                break
            except (NatsTimeout, NoRespondersError):
                # Same message ids again: the stream stores the events at most once.
                log.warning("append_ack_lost", subject=subject, attempt=attempt)
                self.on_retry()
                if attempt == PUBLISH_ATTEMPTS:
                    raise Unavailable(
                        "the event stream did not acknowledge the append (its server may be "
                        "down or out of disk space); resend the command with the same "
                        "command_id (it will not be applied twice)",
                        retry_after=1,
                    ) from None
        if "error" in ack:
            error = ack["error"]
            if error.get("err_code") in MOVED_ON:
                raise WrongExpectedSequence(error.get("description", ""))
            if error.get("err_code") in OUT_OF_STORAGE:
                raise StorageFull(
                    f"the event store is out of storage ({error.get('description')}); nothing "
                    "was appended: retry once space is freed or its limits are raised",
                    retry_after=STORAGE_RETRY_AFTER_S,
                )
            raise Unavailable(f"the event stream refused the append: {error.get('description')}")
        if ack.get("duplicate"):
            raise WrongExpectedSequence("the command was appended before", int(ack["seq"]))
        return int(ack["seq"])

    async def _publish(
        self, subject: str, body: bytes, msg_id: str, expected: int
    ) -> dict[str, Any]:
        headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Subject-Sequence": str(expected)}
        # A request, not `js.publish_async`: nats-py 2.16 raises an error ack inside its
        # reply callback, so that future would never resolve and only its deadline would fire.
        reply = await self.nc.request(subject, body, timeout=self.timeout, headers=headers)
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
                reply = await self.nc.request(subject, body, timeout=self.timeout, headers=headers)
                return _ack(reply)
        raise AssertionError("unreachable: a batch has at least one event")


def _ack(reply: Msg) -> dict[str, Any]:
    result = json.loads(reply.data) if reply.data else {}
    if not isinstance(result, dict):
        raise Unavailable(f"unexpected reply from the event stream: {reply.data[:200]!r}")
    return result

"""One SSE client's durable JetStream consumer, pulled at the pace its socket drains.

The consumer is named from the client id and a hash of its filter, so the same client
with the same topics finds its position again, on any gateway replica. It acks every
delivery only after the bytes were handed to the socket, and never has more than
`capacity` deliveries unacknowledged: a slow client holds at most that many events in the
gateway while the rest of its backlog waits in the stream.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from common.domain import aggregate
from common.errors import Invalid
from common.subjects import Subjects, valid_id


@dataclass(frozen=True, slots=True)
class Topic:
    aggregate_type: str
    aggregate_id: str | None = None

    def __str__(self) -> str:
        return self.aggregate_type + (f":{self.aggregate_id}" if self.aggregate_id else "")


def parse_topics(value: str | None, max_topics: int = 32) -> tuple[Topic, ...]:
    """`todo_list:abc,user_profile` → topics; empty means every aggregate."""
    if not value:
        return ()
    topics = []
    for part in value.split(","):
        kind, _, ident = part.strip().partition(":")
        aggregate(kind)
        topics.append(Topic(kind, valid_id(ident, "topics") if ident else None))
    if len(topics) > max_topics:
        raise Invalid(f"at most {max_topics} topics per feed, got {len(topics)}", field="topics")
    return tuple(sorted(set(topics), key=str))


def consumer_name(client_id: str, topics: tuple[Topic, ...]) -> str:
    digest = hashlib.sha256(",".join(map(str, topics)).encode()).hexdigest()[:12]
    return f"sse_{client_id}_{digest}"


class ClientFeed:
    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subjects: Subjects,
        client_id: str,
        topics: tuple[Topic, ...],
        capacity: int,
        inactive_s: float,
    ) -> None:
        self.js = js
        self.stream = stream
        self.name = consumer_name(client_id, topics)
        self.filters = [subjects.events(t.aggregate_type, t.aggregate_id) for t in topics] or [
            subjects.all_events
        ]
        self.capacity = capacity
        self.inactive_s = inactive_s
        self._sub: JetStreamContext.PullSubscription | None = None

    async def open(self, start: int | None) -> None:
        """Deliver from `start` (a new position), or continue where the consumer stopped.

        A start position always replaces the consumer (its position cannot be moved);
        without one an existing consumer keeps its ack floor and a new one starts after
        the stream's current last sequence.
        """
        exists = True
        try:
            await self.js.consumer_info(self.stream, self.name)
        except NotFoundError:
            exists = False
        if exists and start is not None:
            await self.js.delete_consumer(self.stream, self.name)
        if not exists or start is not None:
            await self.js.add_consumer(self.stream, self._config(start))
        self._sub = await self.js.pull_subscribe_bind(durable=self.name, stream=self.stream)

    def _config(self, start: int | None) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.name,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.NEW,
            opt_start_seq=start or None,
            ack_policy=AckPolicy.ALL,
            ack_wait=30,
            max_ack_pending=self.capacity,
            filter_subjects=self.filters if len(self.filters) > 1 else None,
            filter_subject=self.filters[0] if len(self.filters) == 1 else None,
            inactive_threshold=self.inactive_s,
            num_replicas=1,
            mem_storage=True,
        )

    async def pull(self, limit: int, timeout: float) -> list[Msg]:
        """Up to `limit` deliveries; empty after `timeout` with nothing new."""
        assert self._sub is not None, "open() first"
        try:
            return await self._sub.fetch(min(limit, self.capacity), timeout=timeout)
        except (TimeoutError, NatsTimeout):
            return []

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

"""What a pull consumer reads off the wire (pure): ack subjects and pull-status replies.

A message delivered to a pull request carries its position in its reply subject, the ack
subject, in one of two forms (token positions as nats.go and nats-py read them):

- `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp ns>.<pending>`
  (9 tokens);
- `$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
  <timestamp ns>.<pending>[.<random>]` (11 or 12 tokens; a domain of `_` is none).

Parsing the subject costs a split; nats-py's `msg.metadata` builds a datetime as well, which
shows at a feed's rate. Anything else on a pull request's reply subject is a status reply:
headers only, `Status` and `Description`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeGuard

ACK_PREFIX = "$JS.ACK."
# `Status` header values of a pull request's replies (nats.go's and nats-py's names)
HEARTBEAT = "100"  # idle heartbeat of a request that asked for them
NO_MESSAGES = "404"  # a `no_wait` request found nothing (more)
REQUEST_TIMEOUT = "408"  # the request's `expires` passed
CONFLICT = "409"  # the server ended the request; `Description` says why
NO_RESPONDERS = "503"  # no server answers for the consumer (its node is gone)
# JetStream API error codes (`err_code`)
BELOW_START_SEQ = 10204  # a consumer reset to before its own start sequence ("invalid reset")


class AckPosition(NamedTuple):
    """Where a delivery stands, from its ack subject: sequences are 1-based, `pending` the
    messages left for the consumer after this one, `timestamp_ns` nanoseconds since the
    epoch."""

    stream: str
    consumer: str
    delivered: int  # times this message was delivered (> 1: a redelivery)
    stream_seq: int
    consumer_seq: int
    timestamp_ns: int
    pending: int


def is_delivery(reply: str | None) -> TypeGuard[str]:
    """Whether a message with this reply subject is a delivery (else a status reply)."""
    return reply is not None and reply.startswith(ACK_PREFIX)


_position = AckPosition._make  # a tuple made in C: no generated __new__ per delivery


def ack_position(reply: str) -> AckPosition:
    """The position in an ack subject of either form; ValueError for anything else. Per
    delivery on every feed: ~1.1 µs (issue 16, session 11; was 1.4)."""
    tokens = reply.split(".")
    count = len(tokens)
    head = 2 if count == 9 else 4 if count in (11, 12) else 0
    if not head or not reply.startswith(ACK_PREFIX):
        raise ValueError(f"not a JetStream ack subject: {reply[:200]!r}")
    stream, consumer, delivered, stream_seq, consumer_seq, timestamp_ns, pending = tokens[
        head : head + 7
    ]
    return _position(
        (stream, consumer, int(delivered), int(stream_seq), int(consumer_seq),
         int(timestamp_ns), int(pending))
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class PullStatus:
    """A status reply to a pull request (`$JS.API.CONSUMER.MSG.NEXT`), sent instead of a
    message: `code` one of the constants above (or another the server may add),
    `description` its text, `pending_messages` the messages of the request that were not
    delivered (`Nats-Pending-Messages`, on 404/408; 0 when absent)."""

    code: str
    description: str
    pending_messages: int

    @property
    def consumer_deleted(self) -> bool:
        """The consumer is gone for good (409 `Consumer Deleted`)."""
        return self.code == CONFLICT and "Deleted" in self.description


def pull_status(headers: Mapping[str, str] | None) -> PullStatus:
    """The status reply these headers make; ValueError for a `Nats-Pending-Messages` that
    is not a whole number."""
    headers = headers or {}
    pending = headers.get("Nats-Pending-Messages", "") or "0"
    return PullStatus(headers.get("Status", ""), headers.get("Description", ""), int(pending))

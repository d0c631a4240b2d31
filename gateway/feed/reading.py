"""What a feed reads from the stream: one `Item` per delivery, checked before it is shown.

A delivery that is not an event envelope of the aggregate whose subject it is on (see
`common.envelope.decode_stored`), or whose event type is one of the feed's own message
names, becomes a *skipped* item: it is counted (`sse_skipped_events_total`), logged, and
written as an `event: skipped` frame carrying its `id:` (in the `datastar` format, a line
in the event log and the `seq` signal), so the client's `Last-Event-ID` moves past it and
the feed goes on. Never the end of the feed: the same message would end it again on every
resume.
"""

from __future__ import annotations

import structlog

from common.envelope import Envelope, Undecodable, decode_stored
from gateway import metrics
from gateway.feed.window import Item

FEED_EVENTS = frozenset({"connected", "snapshot", "batch", "lag", "skipped"})
log = structlog.get_logger()


def item(seq: int, subject: str, data: bytes, ack: str = "", pending: int = 0) -> Item:
    """The item of one delivery on `subject` (`<prefix>.events.<type>.<id>`, as the feed's
    filters guarantee): its decoded envelope, or `skipped` with the reason."""
    event = _read(seq, subject, data)
    if isinstance(event, str):
        return skipped(Item(seq, subject, "", data, ack, pending), event)
    return Item(seq, subject, event.event_type, data, ack, pending, event)


# Every client's consumer delivers the same stream message: a gateway with N clients on a
# topic would check each event N times. The last MEMO checks are kept by stream sequence,
# and used only for the very same subject and bytes. Live clients take a message within
# moments of each other, so a short memo serves them; it holds each message's bytes and
# envelope, so it stays small (about 1 MB with 1 KB events).
MEMO = 256
_read_before: dict[int, tuple[str, bytes, Envelope | str]] = {}


def _read(seq: int, subject: str, data: bytes) -> Envelope | str:
    """The checked envelope of a delivery, or why it cannot be shown."""
    seen = _read_before.get(seq)
    if seen is not None and seen[0] == subject and seen[1] == data:
        return seen[2]
    result: Envelope | str
    try:
        _, aggregate_type, aggregate_id = subject.rsplit(".", 2)
        result = decode_stored(data, aggregate_type, aggregate_id)
        if result.event_type in FEED_EVENTS:
            raise Undecodable(f"event type {result.event_type!r} is the name of a feed message")
    except ValueError as exc:  # Undecodable, or a subject of too few tokens
        result = f"cannot be decoded: {exc}"
    if len(_read_before) >= MEMO:
        del _read_before[next(iter(_read_before))]  # the oldest check goes
    _read_before[seq] = (subject, data, result)
    return result


def skipped(one: Item, reason: str) -> Item:
    """`one`, marked to be shown as skipped; its key (`<subject>#<seq>`) is its own, so a
    window never merges it with an event."""
    metrics.skipped.inc()
    log.warning("sse_event_skipped", sequence=one.seq, subject=one.key[:200], reason=reason[:300])
    key = f"{one.key}#{one.seq}"
    return one._replace(key=key, event_type="skipped", skipped=reason[:300])


def subject_of(one: Item) -> str:
    """The stream subject of an item (a skipped one's key carries its sequence too)."""
    return one.key.rsplit("#", 1)[0] if one.skipped else one.key

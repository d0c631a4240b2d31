"""A full-state snapshot of a feed's topics, read from the projector's read models
(the app's `Feed` of each aggregate type names the queries).

Sent when a client's `Last-Event-ID` cannot be resumed (older than the stream's first
sequence, ahead of its last, or malformed); the feed then continues live right after
the sequence the snapshot was taken at, so nothing falls between the two.
"""

from __future__ import annotations

from typing import Any

from common import catalogue
from common.errors import NotFound
from gateway.backend import Backend
from gateway.feed.topics import Topic


def unavailable(app: str, aggregate_type: str) -> dict[str, str]:
    """The state of a whole-type topic whose Feed declares no `every` query."""
    return {
        "unavailable": f"app {app} offers no snapshot of every {aggregate_type} (its Feed "
        f"declares no `every` query); follow {aggregate_type}:<id> topics for snapshots, or "
        "read its queries"
    }


def offered(topic: str) -> bool:
    """Whether a snapshot of `topic` (`type` or `type:id`) is a read model's state, not
    `unavailable`'s note: a topic of one aggregate, or a type whose Feed has `every`."""
    aggregate_type, _, aggregate_id = topic.partition(":")
    feed = catalogue.current().feeds.get(aggregate_type)
    return bool(aggregate_id or (feed and feed.every))


async def take(backend: Backend, topics: tuple[Topic, ...], at_least: int) -> tuple[int, Any]:
    """Return (sequence, {topic: state}) with every read model at or past `at_least`.

    A state is the Feed's query's answer: `one` for a topic of one aggregate (null when it
    has no events yet), `every` for a whole type; a whole type whose Feed declares no
    `every` is `{"unavailable": "<why, and what to do>"}`.

    Topics may be answered at slightly different sequences; the snapshot is labelled
    with the lowest, so the live part that follows can repeat an event but never skip one.
    A state the projector cut to fit one message (e.g. a list of thousands of todos) keeps
    its first items and carries the reply's `truncated` ({"field", "returned", "total"}).
    """
    state: dict[str, Any] = {}
    answered: list[int] = []
    cat = catalogue.current()
    for topic in topics or tuple(Topic(name) for name in sorted(cat.aggregates)):
        feed = cat.feeds[topic.aggregate_type]  # every aggregate has one (catalogue check)
        projection = feed.projection
        name = feed.one if topic.aggregate_id else feed.every
        if not name:  # the app offers no snapshot of the whole type: say so, never a bare null
            state[str(topic)] = unavailable(cat.app.name, topic.aggregate_type)
            continue
        key = cat.query(projection, name).key if topic.aggregate_id else None
        params = {key: topic.aggregate_id} if key else {}
        try:
            read = await backend.read(projection, name, params, at_least)
        except NotFound:
            state[str(topic)] = None
            continue
        answered.append(read.sequence)
        state[str(topic)] = read.result  # a cut answer says `truncated`
    return min(answered, default=at_least), state

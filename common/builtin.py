"""The projections every app gets, applied before the app's own.

`versions` (view `aggregate_versions`: the last version of every aggregate; their states in
`aggregate_states` with the events since in `aggregate_pending`, see projector/versions.py), so
an event that is not its aggregate's next version (a repeat, a gap, one published around
the writer) or that its `evolve` refuses is dead-lettered, as the writer refuses it
(`writer/handler.py`; the check is `projector.versions.Versions.fold`). It is applied with
every batch, also when only other projections are rebuilt.

`stream`: events and commands per minute, aggregate and event type. It feeds what the
dashboard shows for any app (the events-per-minute chart, the totals) and what an analyst
asks first. Named `stream` (reserved for apps), table `stream_counts`.
A command is counted once, under the type of its first event (`new_command`).
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Struct

from common.app import NoParams, Projection, Query

NAME = "stream"
VERSIONS_NAME = "versions"


class Recent(Struct, frozen=True, forbid_unknown_fields=True):
    """Parameters of `recent`: the last `minutes` (1..10,080, a week; default 60)."""

    minutes: Annotated[int, Meta(ge=1, le=10_080)] = 60


class TypeCount(Struct, frozen=True):
    """Events and commands stored of one event type."""

    event_type: str
    events: int
    commands: int


class Totals(Struct, frozen=True):
    """The answer of `totals`: counts per event type (by name) and over all."""

    events_by_type: list[TypeCount]
    events: int
    commands: int


def totals(cursor: Any, params: NoParams) -> dict[str, Any]:
    """The `totals` query over `stream_counts`: `{"events_by_type": [{"event_type", "events",
    "commands"}], "events": int, "commands": int}` (the shape of `Totals`)."""
    rows = cursor.execute(
        """SELECT event_type, sum(events)::BIGINT, sum(commands)::BIGINT FROM stream_counts
           GROUP BY event_type ORDER BY event_type"""
    ).fetchall()
    return {
        "events_by_type": [{"event_type": t, "events": e, "commands": c} for t, e, c in rows],
        "events": sum(row[1] for row in rows),
        "commands": sum(row[2] for row in rows),
    }


STREAM = Projection(
    name=NAME,
    version=1,
    grant="stream",  # Ironstar's own, whatever the app: `read:stream` (the chart, totals)
    tables=("stream_counts",),
    ddl=(
        """CREATE TABLE IF NOT EXISTS stream_counts (
            minute TIMESTAMPTZ NOT NULL,
            aggregate_type VARCHAR NOT NULL,
            event_type VARCHAR NOT NULL,
            events BIGINT NOT NULL,
            commands BIGINT NOT NULL,
            PRIMARY KEY (minute, aggregate_type, event_type)
        )""",
    ),
    apply=(
        """INSERT INTO stream_counts (minute, aggregate_type, event_type, events, commands)
           SELECT date_trunc('minute', occurred_at), aggregate_type, event_type,
                  count(*), count(*) FILTER (new_command)
           FROM batch GROUP BY ALL
           ON CONFLICT DO UPDATE SET
               events = stream_counts.events + excluded.events,
               commands = stream_counts.commands + excluded.commands""",
    ),
    queries={
        "events_per_minute": Query(
            sql="""SELECT minute, aggregate_type, event_type, events FROM stream_counts
                   WHERE minute >= (SELECT max(minute) FROM stream_counts)
                                   - to_minutes($minutes::BIGINT)
                   ORDER BY minute, aggregate_type, event_type""",
            params=Recent,
            description="Events per minute and type over the last `minutes`.",
        ),
        "totals": Query(
            run=totals,
            result=Totals,
            description="All events and commands, and both by event type.",
        ),
    },
)


VERSIONS = Projection(
    name=VERSIONS_NAME,
    version=3,
    grant="stream",
    tables=("aggregate_states", "aggregate_pending"),
    ddl=(
        # States as of the last time they were written (see projector/versions.py) ...
        """CREATE TABLE IF NOT EXISTS aggregate_states (
            aggregate_type VARCHAR NOT NULL,
            aggregate_id VARCHAR NOT NULL,
            version BIGINT NOT NULL,
            state VARCHAR,  -- msgspec JSON of the aggregate's state (its app's aggregates)
            PRIMARY KEY (aggregate_type, aggregate_id)
        )""",
        # ... and the events applied since (payload in its current schema).
        """CREATE TABLE IF NOT EXISTS aggregate_pending (
            sequence BIGINT NOT NULL,
            aggregate_type VARCHAR NOT NULL,
            aggregate_id VARCHAR NOT NULL,
            version BIGINT NOT NULL,
            event_type VARCHAR NOT NULL,
            payload VARCHAR NOT NULL
        )""",
        """CREATE OR REPLACE VIEW aggregate_versions AS
            SELECT aggregate_type, aggregate_id, max(version) AS version FROM (
                SELECT aggregate_type, aggregate_id, version FROM aggregate_states
                UNION ALL
                SELECT aggregate_type, aggregate_id, version FROM aggregate_pending
            ) GROUP BY aggregate_type, aggregate_id""",
    ),
    apply=(),  # the engine's own check: `projector.versions.Versions.fold`
)
BUILT_IN = (VERSIONS, STREAM)  # in the order they are applied, before the app's
ALWAYS = frozenset({VERSIONS_NAME})  # applied with every batch, also when others rebuild

"""`analytics`: what an analyst opens first.

Views only, applying nothing itself: `event_counts` (per minute, aggregate type and event
type, the events and the commands: Ironstar's built-in `stream_counts`, under the name the
example's users know), `commands_per_minute`, `throughput` and `todos_over_time` (active
and completed todos at the end of each minute, summed from `todo_lists`' `todo_changes`).
"""

from __future__ import annotations

from typing import Any

from common import builtin
from common.app import NoParams, Projection, Query
from common.builtin import Recent


def _recent(view: str, description: str) -> Query:
    return Query(
        sql=f"""SELECT * FROM {view}
                WHERE minute >= (SELECT max(minute) FROM {view}) - to_minutes($minutes::BIGINT)
                ORDER BY minute""",
        params=Recent,
        description=description,
    )


def totals(cursor: Any, params: NoParams) -> dict[str, Any]:
    """The stream's totals and the active and completed todos now."""
    active, completed = cursor.execute(
        """SELECT coalesce(sum(active), 0)::BIGINT, coalesce(sum(completed), 0)::BIGINT
           FROM todo_lists"""
    ).fetchone()
    return {**builtin.totals(cursor, params), "active": active, "completed": completed}


class Totals(builtin.Totals, frozen=True):
    active: int
    completed: int


projection = Projection(
    name="analytics",
    version=3,
    tables=(),
    ddl=(
        "CREATE OR REPLACE VIEW event_counts AS SELECT * FROM stream_counts",
        """CREATE OR REPLACE VIEW commands_per_minute AS
            SELECT minute, aggregate_type, sum(commands)::BIGINT AS commands FROM event_counts
            GROUP BY minute, aggregate_type""",
        """CREATE OR REPLACE VIEW throughput AS
            SELECT minute, sum(events)::BIGINT AS events, sum(commands)::BIGINT AS commands,
                   round(sum(events) / 60.0, 3) AS events_per_second,
                   round(sum(commands) / 60.0, 3) AS commands_per_second
            FROM event_counts GROUP BY minute""",
        """CREATE OR REPLACE VIEW todos_over_time AS
            SELECT minute,
                   sum(active_delta) OVER (ORDER BY minute)::BIGINT AS active,
                   sum(completed_delta) OVER (ORDER BY minute)::BIGINT AS completed
            FROM todo_changes""",
    ),
    apply=(),
    queries={
        "events_per_minute": builtin.STREAM.queries["events_per_minute"],
        "commands_per_minute": _recent("commands_per_minute", "Commands per minute."),
        "throughput": _recent("throughput", "Events and commands per minute and second."),
        "todos_over_time": _recent("todos_over_time", "Active and completed todos per minute."),
        "totals": Query(
            run=totals,
            result=Totals,
            description="All events and commands, by type, and the active/completed todos.",
        ),
    },
)

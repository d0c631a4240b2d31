"""`todo_lists`: TodoMVC state per list (one row per list, its todos a LIST of STRUCTs)
and todo counts over time.

Layout (docs/architecture.md, "Read layout"): a `get` is one row found by its key, and a
batch reads and rewrites only the lists it touches (index scans for a batch of few lists),
never every todo of the history. A deleted todo leaves its list (deleting is terminal).
Applied as SQL over the staged batch (`batch`, one row per event), in order inside the
batch's transaction: first the per-minute change of active and completed
todos (a delete needs the todo's state *before* the batch), then a new row of every list
with a change to a known todo (its items after the batch), then the old rows of those
lists are deleted (a list's rows older than the batch, where a row of the batch exists).
The view `todos` unnests the items: one row per todo of a list (`deleted` always false,
kept for the queries written against the former table). "Active" is TodoMVC's word for
an open todo: not completed, not deleted.
"""

from __future__ import annotations

from msgspec import Struct

from common.app import Projection, Query

# What `apply` reads (`events=`): a batch with none of them skips the statements.
TODO_EVENTS = ("todo_added", "todo_renamed", "todo_completed", "todo_reopened", "todo_deleted")

# The batch's todo events, with the todo id taken out of the payload.
_TODO_EVENTS = """(SELECT *, payload->>'todo_id' AS todo_id FROM batch
                   WHERE aggregate_type = 'todo_list')"""

# The todos of the lists the batch touches, as they were before it (one row each).
_TOUCHED = """(SELECT list_id, updated_at AS list_updated_at,
                      unnest(items, recursive := true)
               FROM todo_lists
               WHERE list_id IN (SELECT aggregate_id FROM batch
                                 WHERE aggregate_type = 'todo_list'))"""

COUNT_CHANGES = f"""
INSERT INTO todo_changes (minute, active_delta, completed_delta)
SELECT date_trunc('minute', occurred_at), sum(active), sum(completed) FROM (
    SELECT occurred_at,
           CASE WHEN event_type = 'todo_added' THEN 1
                WHEN event_type = 'todo_completed' THEN -1
                WHEN event_type = 'todo_reopened' THEN 1
                WHEN was_completed THEN 0 ELSE -1 END AS active,
           CASE WHEN event_type = 'todo_added' THEN 0
                WHEN event_type = 'todo_completed' THEN 1
                WHEN event_type = 'todo_reopened' THEN -1
                WHEN was_completed THEN -1 ELSE 0 END AS completed
    FROM (
        SELECT e.occurred_at, e.event_type,
               -- the todo's state just before this event: from earlier events of the
               -- batch, else from the list as it was before the batch
               coalesce(last_value(CASE e.event_type WHEN 'todo_completed' THEN true
                                                     WHEN 'todo_reopened' THEN false
                                                     WHEN 'todo_added' THEN false END
                                   IGNORE NULLS) OVER earlier,
                        t.completed) AS was_completed,
               t.todo_id IS NOT NULL
                   OR bool_or(e.event_type = 'todo_added') OVER so_far AS known
        FROM {_TODO_EVENTS} AS e
        LEFT JOIN {_TOUCHED} AS t ON t.list_id = e.aggregate_id AND t.todo_id = e.todo_id
        WHERE e.event_type IN ('todo_added', 'todo_completed', 'todo_reopened', 'todo_deleted')
        WINDOW so_far AS (PARTITION BY e.aggregate_id, e.todo_id ORDER BY e.sequence),
               earlier AS (so_far ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
    ) WHERE known  -- changes to a todo never added count nothing
) GROUP BY ALL
ON CONFLICT DO UPDATE SET
    active_delta = todo_changes.active_delta + excluded.active_delta,
    completed_delta = todo_changes.completed_delta + excluded.completed_delta
"""

# Every touched list's todos after the batch, folded into one new row per list.
INSERT_LISTS = f"""
INSERT INTO todo_lists
SELECT list_id,
       coalesce(list({{'todo_id': todo_id, 'text': text, 'completed': completed,
                       'position': position, 'updated_seq': updated_seq}} ORDER BY position)
                    FILTER (NOT deleted), []),
       count(*) FILTER (NOT deleted AND NOT completed),
       count(*) FILTER (NOT deleted AND completed),
       greatest(max(list_updated_at), max(changed_at)),
       max(updated_seq)
FROM (
    SELECT coalesce(t.list_id, c.list_id) AS list_id, coalesce(t.todo_id, c.todo_id) AS todo_id,
           coalesce(c.text, t.text) AS text,
           coalesce(c.completed, t.completed, false) AS completed,
           coalesce(c.deleted, false) AS deleted,
           coalesce(t.position, c.position) AS position,
           coalesce(c.updated_seq, t.updated_seq) AS updated_seq,
           t.list_updated_at, c.changed_at
    FROM {_TOUCHED} AS t
    FULL JOIN (
        SELECT aggregate_id AS list_id, todo_id,
               bool_or(event_type = 'todo_added') AS added,
               arg_max(payload->>'text', sequence)
                   FILTER (event_type IN ('todo_added', 'todo_renamed')) AS text,
               arg_max(event_type = 'todo_completed', sequence)
                   FILTER (event_type IN ('todo_completed', 'todo_reopened')) AS completed,
               bool_or(event_type = 'todo_deleted') AS deleted,
               min(version) FILTER (event_type = 'todo_added') AS position,
               max(occurred_at) AS changed_at,
               max(sequence) AS updated_seq
        FROM {_TODO_EVENTS} GROUP BY ALL
    ) AS c ON t.list_id = c.list_id AND t.todo_id = c.todo_id
    WHERE t.todo_id IS NOT NULL OR c.added  -- changes to a todo never added: nothing
)
GROUP BY list_id
HAVING count(changed_at) > 0  -- a list with no change to a known todo keeps its row
"""

# The rows the batch replaced: older than the batch, of a list with a row of the batch.
DELETE_REPLACED = """
DELETE FROM todo_lists
WHERE updated_seq < (SELECT min(sequence) FROM batch)
  AND list_id IN (SELECT list_id FROM todo_lists
                  WHERE updated_seq >= (SELECT min(sequence) FROM batch))
"""


class ListId(Struct, frozen=True, forbid_unknown_fields=True):
    list_id: str


class Item(Struct, frozen=True):
    todo_id: str
    text: str
    completed: bool
    updated_seq: int


class TodoList(Struct, frozen=True):
    list_id: str
    items: list[Item]
    active: int
    completed: int


class ListSummary(Struct, frozen=True):
    list_id: str
    active: int
    completed: int
    updated_at: str


projection = Projection(
    name="todo_lists",
    version=5,
    grant="todo_list",
    events=frozenset(TODO_EVENTS),
    tables=("todo_lists", "todo_changes"),
    ddl=(
        # One row per list (between the statements of a batch, two): `items` in the order
        # they were added, deleted ones left out.
        """CREATE TABLE IF NOT EXISTS todo_lists (
            list_id VARCHAR NOT NULL,
            items STRUCT(todo_id VARCHAR, text VARCHAR, completed BOOLEAN, position BIGINT,
                         updated_seq BIGINT)[] NOT NULL,
            active BIGINT NOT NULL,
            completed BIGINT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            updated_seq BIGINT NOT NULL
        )""",
        # `get` reads one list: one row looked up by its key (docs/benchmarks.md).
        "CREATE INDEX IF NOT EXISTS todo_lists_by_id ON todo_lists (list_id)",
        """CREATE OR REPLACE VIEW todos AS
            SELECT list_id, unnest(items, recursive := true), false AS deleted
            FROM todo_lists""",
        """CREATE TABLE IF NOT EXISTS todo_changes (
            minute TIMESTAMPTZ PRIMARY KEY,
            active_delta BIGINT NOT NULL,
            completed_delta BIGINT NOT NULL
        )""",
    ),
    apply=(COUNT_CHANGES, INSERT_LISTS, DELETE_REPLACED),
    queries={
        "get": Query(
            sql="""SELECT $list_id AS list_id,
                      coalesce(first([{'todo_id': i.todo_id, 'text': i.text,
                                       'completed': i.completed, 'updated_seq': i.updated_seq}
                                      FOR i IN items]), []) AS items,
                      coalesce(first(active), 0) AS active,
                      coalesce(first(completed), 0) AS completed
                   FROM todo_lists WHERE list_id = $list_id""",
            params=ListId,
            result=TodoList,
            one=True,
            key="list_id",
            description="One todo list: its items in order and its active/completed counts.",
        ),
        "lists": Query(
            sql="""SELECT list_id, active, completed, updated_at FROM todo_lists
                   ORDER BY updated_at DESC LIMIT 100""",
            result=list[ListSummary],
            description="The most recently changed todo lists with their counts.",
        ),
    },
)

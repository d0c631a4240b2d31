"""`todo_lists`: TodoMVC state per list (one row per todo) and todo counts over time.

Applied as SQL over the staged batch (`batch`, one row per event), two statements in
order inside the batch's transaction, each written to stay linear in the history
(docs/extending.md, "A projection that stays linear"):

1. `MERGE_TODOS`: the batch folded to one row per todo (its last text, completed state,
   deleted flag, …), merged into `todos` by key in one statement: a known todo is
   updated, an added one inserted, a change to a todo never added is dropped.
2. `COUNT_CHANGES`: the per-minute change of active and completed todos. A delete needs
   the todo's state *before* it: from the batch's earlier events, else from the row the
   merge just wrote (`completed` is never changed by a delete or after it). Those rows are
   found by their `updated_seq` (the todo's last sequence in the batch), one BIGINT column
   filtered by the batch's sequences: DuckDB skips every row group whose `updated_seq`
   range holds none of them, and never compares the key strings of the whole table.

DuckDB (2.0) looks a key up in an ART index only for a constant; a join with `batch`
(also `MERGE` and `INSERT … ON CONFLICT`, planned as a join) scans the table, so one scan
per batch (the merge) is what applying costs beyond the batch's own size.
"Active" is TodoMVC's word for an open todo: not completed, not deleted.
"""

from __future__ import annotations

from msgspec import Struct

from common.app import Projection, Query

TODO_EVENTS = ("todo_added", "todo_renamed", "todo_completed", "todo_reopened", "todo_deleted")

# The batch's todo events, with the todo id taken out of the payload.
_TODO_EVENTS = """(SELECT *, payload->>'todo_id' AS todo_id FROM batch
                   WHERE aggregate_type = 'todo_list')"""

MERGE_TODOS = f"""
MERGE INTO todos AS t
USING (
    SELECT aggregate_id AS list_id, todo_id,
           bool_or(event_type = 'todo_added') AS added,
           arg_max(payload->>'text', sequence)
               FILTER (event_type IN ('todo_added', 'todo_renamed')) AS text,
           arg_max(event_type = 'todo_completed', sequence)
               FILTER (event_type IN ('todo_added', 'todo_completed', 'todo_reopened'))
               AS completed,
           bool_or(event_type = 'todo_deleted') AS deleted,
           arg_min(version, sequence) FILTER (event_type = 'todo_added') AS position,
           arg_min(occurred_at, sequence) FILTER (event_type = 'todo_added') AS created_at,
           arg_max(occurred_at, sequence) AS updated_at,
           max(sequence) AS updated_seq
    FROM {_TODO_EVENTS} GROUP BY ALL
) AS c
ON t.list_id = c.list_id AND t.todo_id = c.todo_id
WHEN MATCHED THEN UPDATE SET
    text = coalesce(c.text, t.text),
    completed = coalesce(c.completed, t.completed),
    deleted = t.deleted OR c.deleted,
    updated_at = c.updated_at,
    updated_seq = c.updated_seq
WHEN NOT MATCHED AND c.added THEN INSERT VALUES (
    c.list_id, c.todo_id, c.text, c.completed, c.deleted, c.position, c.created_at,
    c.updated_at, c.updated_seq)
"""

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
               -- batch, else as the merge left it (a delete leaves `completed` alone)
               coalesce(last_value(CASE e.event_type WHEN 'todo_completed' THEN true
                                                     WHEN 'todo_reopened' THEN false
                                                     WHEN 'todo_added' THEN false END
                                   IGNORE NULLS) OVER earlier,
                        t.completed) AS was_completed,
               -- known before the batch (a row, not added by it), or added so far
               (t.updated_seq IS NOT NULL
                AND NOT bool_or(e.event_type = 'todo_added') OVER todo)
                   OR bool_or(e.event_type = 'todo_added') OVER so_far AS known
        FROM (  -- each event with its todo's last sequence in the batch: the merge's updated_seq
            SELECT *, max(sequence) OVER (PARTITION BY aggregate_id, todo_id) AS last_seq
            FROM {_TODO_EVENTS}
        ) AS e
        LEFT JOIN (  -- the rows the merge wrote, by one BIGINT: untouched row groups are skipped
            SELECT updated_seq, completed FROM todos
            WHERE updated_seq IN (SELECT sequence FROM batch)
        ) AS t ON t.updated_seq = e.last_seq
        WHERE e.event_type IN ('todo_added', 'todo_completed', 'todo_reopened', 'todo_deleted')
        WINDOW todo AS (PARTITION BY e.aggregate_id, e.todo_id),
               so_far AS (todo ORDER BY e.sequence),
               earlier AS (so_far ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
    ) WHERE known  -- changes to a todo never added count nothing
) GROUP BY ALL
ON CONFLICT DO UPDATE SET
    active_delta = todo_changes.active_delta + excluded.active_delta,
    completed_delta = todo_changes.completed_delta + excluded.completed_delta
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
    events=frozenset(TODO_EVENTS),  # a batch of none of them skips the statements
    tables=("todos", "todo_changes"),
    ddl=(
        # No primary key: `MERGE_TODOS` keeps one row per todo (a key would only add the
        # cost of checking it; DuckDB does not use it to find the rows a batch changes).
        """CREATE TABLE IF NOT EXISTS todos (
            list_id VARCHAR NOT NULL,
            todo_id VARCHAR NOT NULL,
            text VARCHAR,
            completed BOOLEAN,
            deleted BOOLEAN NOT NULL,
            position BIGINT,
            created_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ NOT NULL,
            updated_seq BIGINT NOT NULL
        )""",
        # `get` reads one list: an index lookup instead of a scan of every todo (at 5M
        # events, 1.75M rows: ~40 ms scanned, < 1 ms looked up; docs/benchmarks.md).
        "CREATE INDEX IF NOT EXISTS todos_by_list ON todos (list_id)",
        """CREATE TABLE IF NOT EXISTS todo_changes (
            minute TIMESTAMPTZ PRIMARY KEY,
            active_delta BIGINT NOT NULL,
            completed_delta BIGINT NOT NULL
        )""",
    ),
    apply=(MERGE_TODOS, COUNT_CHANGES),
    queries={
        "get": Query(
            sql="""SELECT $list_id AS list_id,
                      coalesce(list({'todo_id': todo_id, 'text': text, 'completed': completed,
                                     'updated_seq': updated_seq} ORDER BY position)
                               FILTER (NOT deleted), []) AS items,
                      count(*) FILTER (NOT deleted AND NOT completed) AS active,
                      count(*) FILTER (NOT deleted AND completed) AS completed
                   FROM todos WHERE list_id = $list_id""",
            params=ListId,
            result=TodoList,
            one=True,
            key="list_id",
            description="One todo list: its items in order and its active/completed counts.",
        ),
        "lists": Query(
            sql="""SELECT list_id,
                      count(*) FILTER (NOT deleted AND NOT completed) AS active,
                      count(*) FILTER (NOT deleted AND completed) AS completed,
                      max(updated_at) AS updated_at
                   FROM todos GROUP BY list_id ORDER BY updated_at DESC LIMIT 100""",
            result=list[ListSummary],
            description="The most recently changed todo lists with their counts.",
        ),
    },
)

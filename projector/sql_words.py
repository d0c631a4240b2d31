"""The words of a SQL statement (DuckDB's tokenizer), its name, the tables it writes, and
what an app's statement may not name (the engine's private tables, functions the ad-hoc
SQL review refuses): shared by the start-up check (`projector.app_sql`), a hook's cursor
(`projector.hook_cursor`) and the ad-hoc SQL check (`projector.sql`)."""

from __future__ import annotations

from itertools import pairwise
from typing import NamedTuple

import duckdb

from common.checks_names import ENGINE_TABLES
from projector.sql_functions import DENIED, DENIED_PREFIXES

# Words after which a statement names the table it writes (CREATE/DROP/ALTER TABLE x,
# INSERT/MERGE INTO x, UPDATE x, DELETE FROM x, TRUNCATE x, CREATE VIEW x, DROP SCHEMA x).
_TARGET_AFTER = frozenset({"table", "into", "update", "truncate", "view", "schema"})
_SKIP = frozenset({"if", "not", "exists", "only", "or", "replace", "temp", "temporary"})
_NOT_A_NAME = frozenset({"with", "from", "values", "("})  # words that start a statement of any type
# Tables no app SQL may name: the engine's, and the built-in `versions`'s private ones.
PRIVATE = ENGINE_TABLES | {"aggregate_states", "aggregate_pending"}


def words(statement: str, keep_quotes: bool = False) -> list[str]:
    """The statement's tokens, comments left out: lowercase, identifiers unquoted, string
    constants as written (with their quotes) when `keep_quotes`."""
    tokens = duckdb.tokenize(statement)
    ends = [start for start, _ in tokens[1:]] + [len(statement)]
    found = []
    for (start, kind), end in zip(tokens, ends, strict=True):
        text = statement[start:end].strip()
        if kind == duckdb.token_type.comment:
            continue
        if kind == duckdb.token_type.string_const:
            found.append(text if keep_quotes else text.strip("'"))
        else:
            found.append(text.strip('"').lower())
    return found


def targets(statement: str) -> list[str]:
    """The tables a statement names as what it creates, changes or drops (lowercase)."""
    said = words(statement)
    found: list[str] = []
    for i, word in enumerate(said):
        index_on = word == "on" and "index" in said[:i]  # CREATE INDEX i ON <table>
        if word in _TARGET_AFTER or index_on or (word == "from" and said[i - 1 : i] == ["delete"]):
            j = i + 1
            while j < len(said) and said[j] in _SKIP:
                j += 1
            while j + 2 < len(said) and said[j + 1] == ".":  # schema.table: the table
                j += 2
            if j < len(said) and said[j] not in ("set", "(", "as", "by"):
                found.append(said[j])
    return found


def calls(statement: str) -> list[str]:
    """The words of a statement that are followed by `(`: the functions it calls (and, in
    `INSERT INTO t (a, b)`, a table: callers judge names against a list of functions)."""
    said = words(statement)
    return [word for word, after in pairwise(said) if after == "("]


class Parsed(NamedTuple):
    """One statement of a SQL text: `type`, DuckDB's parsed statement type (`SELECT`,
    `MERGE_INTO`, `SET`…; its first two words when the duckdb module's enum lacks it, e.g.
    `UPDATE EXTENSIONS`), which rules are judged by; and `name`, the statement as its author
    wrote it, which messages say."""

    type: str
    name: str


def parse(sql: str) -> list[Parsed]:
    """Each statement of `sql`, in order; `duckdb.Error` (DuckDB's parser's) when it does
    not parse."""
    return [parsed(statement) for statement in duckdb.extract_statements(sql)]


def parsed(statement: duckdb.Statement) -> Parsed:
    """`statement`'s type and name. The name is the type when the text starts with it (or
    with WITH, FROM, VALUES or a parenthesis), else the text's first word: DuckDB files some
    statements under another type (`PRAGMA threads=4` and `RESET` are SET, `COMMIT` a
    TRANSACTION, `CHECKPOINT` a CALL, `INSTALL` a LOAD), and a message naming that type
    would name a statement its author did not write."""
    said = words(statement.query)
    try:
        kind = statement.type.name
    except ValueError:  # a statement type the duckdb module's own enum does not know
        kind = " ".join(said[:2]).upper()
        return Parsed(kind, kind)
    first = said[0].upper() if said else ""
    if not first or first.lower() in _NOT_A_NAME or kind.split("_")[0] == first:
        return Parsed(kind, kind)
    return Parsed(kind, first)


def private_named(statement: str) -> str | None:
    """The first (by name) of the engine's private tables (`PRIVATE`: checkpoint, dead
    letters, versions, pending states) `statement` names outside string constants, or None."""
    named = sorted(PRIVATE.intersection(words(statement, keep_quotes=True)))
    return named[0] if named else None


def refused_call(statement: str) -> str | None:
    """`<f>(), refused: <why>` for the first function `statement` calls that the ad-hoc SQL
    review refuses by name (`projector.sql_functions.DENIED` and its prefixes: e.g.
    `query_table()`, which reads a table named by a string, past `private_named`), or None."""
    for name in calls(statement):
        why = DENIED.get(name) or next(
            (reason for prefix, reason in DENIED_PREFIXES.items() if name.startswith(prefix)), None
        )
        if why:
            return f"{name}(), refused: {why}"
    return None

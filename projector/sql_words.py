"""The words of a SQL statement (DuckDB's tokenizer) and the tables it writes: shared by
the start-up check (`projector.app_sql`) and a hook's cursor (`projector.hook_cursor`)."""

from __future__ import annotations

from itertools import pairwise

import duckdb

# Words after which a statement names the table it writes (CREATE/DROP/ALTER TABLE x,
# INSERT/MERGE INTO x, UPDATE x, DELETE FROM x, TRUNCATE x, CREATE VIEW x, DROP SCHEMA x).
_TARGET_AFTER = frozenset({"table", "into", "update", "truncate", "view", "schema"})
_SKIP = frozenset({"if", "not", "exists", "only", "or", "replace", "temp", "temporary"})


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

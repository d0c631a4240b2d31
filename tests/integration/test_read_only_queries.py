"""A read never writes: a query's SQL is checked at start (`projector.app_sql`), and a
query's Python hook runs in a read-only transaction of a real DuckDB file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import duckdb
import pytest

from common.app import NoParams, Query
from common.catalogue import Catalogue
from projector.readmodel import ReadModel
from tests.apps import inventory


def _wipe(cursor: Any, params: NoParams) -> list[Any]:
    return cursor.execute("DELETE FROM stock_levels RETURNING *").fetchall()


def test_a_query_hook_that_writes_fails_and_changes_nothing(tmp_path: Path) -> None:
    stock = inventory.app.projections[0]
    queries = {**stock.queries, "wipe": Query(run=_wipe)}
    app = dataclasses.replace(
        inventory.app, projections=(dataclasses.replace(stock, queries=queries),)
    )
    model = ReadModel(tmp_path / "r.duckdb", catalogue=Catalogue(app))
    model.con.execute("INSERT INTO stock_levels VALUES ('a', 'A', 1, 1)")
    with pytest.raises(duckdb.TransactionException, match="read-only"):
        model.query("stock", "wipe", NoParams())
    assert model.con.execute("SELECT count(*) FROM stock_levels").fetchall() == [(1,)]
    assert model.query("stock", "item", inventory.Sku(sku="a"))["on_hand"] == 1

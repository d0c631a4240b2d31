"""The catalogue refuses an inconsistent app with one line naming what is wrong."""

from __future__ import annotations

import dataclasses

import pytest

from common.app import Feed, Projection, Query
from common.catalogue import AppError, Catalogue, install, load
from examples.todo import app as todo
from tests.apps.inventory import app as inventory


def _problems(**changes: object) -> list[str]:
    return Catalogue(dataclasses.replace(inventory, **changes)).check()  # type: ignore[arg-type]


def test_the_shipped_apps_have_no_problem() -> None:
    assert Catalogue(todo).check() == []
    assert Catalogue(inventory).check() == []


def test_an_aggregate_without_a_feed_is_named() -> None:
    assert _problems(feeds=()) == ["aggregate stock_item has no Feed (how its feed is snapshotted)"]


def test_a_feed_query_without_its_key_and_a_missing_query_are_named() -> None:
    problems = _problems(feeds=(Feed("stock_item", "stock", one="low", every="nope"),))
    assert "feed of stock_item: no query stock/nope" in problems
    assert "feed of stock_item: query stock/low needs key= (the aggregate id)" in problems


def test_a_schema_without_its_upcasters_is_named() -> None:
    aggregate = dataclasses.replace(inventory.aggregates[0], upcasters={})
    assert _problems(aggregates=(aggregate,)) == [
        "aggregate stock_item: no upcaster for stock_received schema 1 → 2"
    ]


def test_two_projections_owning_one_table_and_a_reserved_name_are_named() -> None:
    twin = dataclasses.replace(inventory.projections[0], name="twin")
    problems = _problems(projections=(*inventory.projections, twin))
    assert problems == ["table stock_levels belongs to stock and twin"]
    own = dataclasses.replace(inventory.projections[0], name="stream", tables=())
    problems = _problems(projections=(*inventory.projections, own))
    assert "projection name 'stream' is Ironstar's own" in problems


def test_a_query_with_neither_sql_nor_run_is_named() -> None:
    broken = Projection("extra", 1, (), (), (), queries={"q": Query()})
    assert _problems(projections=(*inventory.projections, broken)) == [
        "query extra/q needs exactly one of sql= or run="
    ]


def test_installing_a_broken_app_raises_its_first_problem_and_a_missing_one_says_so() -> None:
    with pytest.raises(AppError, match="app inventory: aggregate stock_item has no Feed"):
        install(Catalogue(dataclasses.replace(inventory, feeds=())))
    with pytest.raises(AppError, match="IRONSTAR_APP=no_such_app: cannot import it"):
        load("no_such_app")


def test_a_projection_reading_event_types_the_app_lacks_or_none_at_all_is_named() -> None:
    stock = inventory.projections[0]
    typo = dataclasses.replace(stock, events=frozenset({"stock_received", "stock_shiped"}))
    assert _problems(projections=(typo,)) == [
        "projection stock: events: 'stock_shiped' is no event type of the app's aggregates"
    ]
    empty = dataclasses.replace(stock, events=frozenset())
    assert _problems(projections=(empty,)) == [
        "projection stock: events is empty: the projection would never apply a batch "
        "(None: every batch)"
    ]
    listed = dataclasses.replace(stock, events=["stock_received"])
    assert _problems(projections=(listed,)) == [
        "projection stock: events must be a frozenset of event types, got ['stock_received']"
    ]
    fine = dataclasses.replace(stock, events=frozenset({"item_registered", "stock_received"}))
    assert _problems(projections=(fine,)) == []

"""An app's declarations and SQL are checked at start: each inconsistency one line naming
the item and what is wrong (most dangerous first: a query that writes, functions that are
not, DDL or apply SQL touching Ironstar's own tables)."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import pytest
from msgspec import Meta, Struct

from common import checks
from common.app import Aggregate, App, Feed, LiveView, Panel, Projection, Query
from common.catalogue import AppError, Catalogue, install
from tests.apps import inventory
from tests.apps.inventory import domain

APP = inventory.app
STOCK_ITEM = APP.aggregates[0]
STOCK = APP.projections[0]


class Untagged(Struct, frozen=True):
    quantity: int


class Twin(Struct, frozen=True, tag="receive", tag_field="type"):
    quantity: int


class Nested(Struct, frozen=True):
    sku: str


class Listed(Struct, frozen=True, forbid_unknown_fields=True):
    skus: list[str]


class Deep(Struct, frozen=True, forbid_unknown_fields=True):
    at: Nested


class Bounded(Struct, frozen=True, forbid_unknown_fields=True):
    sku: str
    limit: Annotated[int, Meta(ge=1, le=100)] = 10
    kind: str | None = None


class Counted(Struct, frozen=True, tag="counted", tag_field="event_type"):
    by_bin: dict[str, dict[int, int]]  # stored as JSON: "1", never read back as 1 (verify11 F2)


class Keyed(Struct, frozen=True, tag="keyed", tag_field="event_type"):
    by_day: dict[datetime.date, int]
    by_id: dict[uuid.UUID, list[dict[str, int]]]


def _aggregate(**changes: Any) -> App:
    return dataclasses.replace(APP, aggregates=(dataclasses.replace(STOCK_ITEM, **changes),))


def _stock(**changes: Any) -> App:
    return dataclasses.replace(APP, projections=(dataclasses.replace(STOCK, **changes),))


def _query(**fields: Any) -> App:
    return _stock(queries={**STOCK.queries, "extra": Query(**fields)})


def _extra(**fields: Any) -> App:
    extra = Projection(**{"name": "extra", "version": 1, "ddl": (), "tables": (),
                          "apply": (), **fields})  # fmt: skip
    return dataclasses.replace(APP, projections=(*APP.projections, extra))


async def _render(ask: Any, params: Any) -> str:
    return ""


def _sync_render(ask: Any, params: Any) -> str:
    return ""


def _decide_one(state: Any) -> list[Any]:
    return []


async def _async_two(state: Any, event: Any) -> Any:
    return state


async def _async_one(params: Any) -> Any:
    return params


async def _async_demo(rng: Any, read: Any) -> AsyncIterator[Any]:
    yield None


async def _async_list(count: Any, seed: Any) -> list[Any]:
    return []


def _wrapped(function: Any) -> Any:
    """A plain decorator over an async function: what it gives must still be awaited."""

    @functools.wraps(function)
    def call(*args: Any) -> Any:
        return function(*args)

    return call


def _live(query: Any, render: Any = _sync_render) -> App:
    view = LiveView(query=query, render=render)
    return dataclasses.replace(APP, panels=(Panel("stock", "Stock", _render, live={"v": view}),))


CASES: dict[str, tuple[App, str]] = {
    # a GET must never write
    "query deletes": (
        _query(sql="DELETE FROM stock_levels RETURNING *"),
        "query stock/extra: sql must be one read-only SELECT, got DELETE",
    ),
    "query deletes in a CTE": (
        _query(sql="WITH d AS (DELETE FROM stock_levels RETURNING *) SELECT * FROM d"),
        "query stock/extra: ",
    ),
    "two statements": (
        _query(sql="SELECT 1; DROP TABLE stock_levels"),
        "sql must be one read-only SELECT, got SELECT, DROP",
    ),
    # functions that are not
    "decide None": (_aggregate(decide=None), "aggregate stock_item: decide must be a function"),
    "evolve 42": (_aggregate(evolve=42), "aggregate stock_item: evolve must be a function"),
    "initial object()": (_aggregate(initial=object()), "initial must be an instance of its state"),
    "render text": (
        dataclasses.replace(APP, panels=(Panel("stock", "Stock", "panel"),)),  # type: ignore[arg-type]
        "panel stock: render must be an async function",
    ),
    "decide of one argument": (_aggregate(decide=_decide_one), "decide must be a function (state"),
    "decide of three arguments": (
        _aggregate(decide=lambda state, command, extra: []),
        "aggregate stock_item: decide must be a function (state, message): it cannot be "
        "called with 2 argument(s)",
    ),
    # async where Ironstar never awaits, plain where it does
    "decide async": (_aggregate(decide=_async_two), "decide must be a plain function (state"),
    "evolve async": (_aggregate(evolve=_async_two), "evolve must be a plain function (state"),
    "evolve returns a coroutine": (
        _aggregate(evolve=lambda state, event: _async_two(state, event)),
        "aggregate stock_item: evolve returns a coroutine",
    ),
    "decide returns a coroutine": (
        _aggregate(decide=lambda state, command: _async_two(state, command)),
        "aggregate stock_item: decide returns a coroutine",
    ),
    "evolve async under a decorator": (
        _aggregate(evolve=_wrapped(_async_two)),
        "aggregate stock_item: evolve must be a plain function (state, message), not async",
    ),
    **{
        f"{role} {how}": (
            dataclasses.replace(APP, **{role: function}),
            f"App {role} must be a plain function {shape}, not async",
        )
        for role, shape in (("demo", "(rng, read)"), ("events", "(count, seed)"))
        for how, function in (("an async generator", _async_demo), ("async", _async_list))
    },
    "demo of one argument": (
        dataclasses.replace(APP, demo=_async_one),
        "App demo must be a function (rng, read): it cannot be called with 2 argument(s)",
    ),
    "apply hook async": (_stock(apply=_async_two), "projection stock: apply must be a plain"),
    "query run async": (_query(run=_async_two), "query stock/extra: run must be a plain"),
    "upcaster async": (
        _aggregate(upcasters={("stock_received", 1): _async_one}),
        "upcaster stock_received 1 must be a plain function (payload)",
    ),
    "patches async": (
        dataclasses.replace(APP, panels=(Panel("stock", "Stock", _render, patches=_async_two),)),
        "panel stock: patches must be a plain function",
    ),
    "live query async": (_live(_async_one), "live view v: query must be a plain function"),
    "live render async": (
        _live(lambda p: ("stock", "item", {}), _render),
        "live view v: render must be a plain function",
    ),
    "live views a list": (
        dataclasses.replace(APP, panels=(Panel("stock", "Stock", _render, live=[]),)),  # type: ignore[arg-type]
        "panel stock: live must be a dict {name: ...}",
    ),
    "live view of an unknown query": (
        _live(lambda p: ("stock", "nope", {})),
        "panel stock: live view v: its query names no query stock/nope (known: ",
    ),
    "live view of an unknown projection": (
        _live(lambda p: ("nope", "item", {})),
        "its query names no projection 'nope' (known: ",
    ),
    "render not async": (
        dataclasses.replace(APP, panels=(Panel("stock", "Stock", _sync_render),)),
        "panel stock: render must be an async function",
    ),
    "fragment not async": (
        dataclasses.replace(
            APP, panels=(Panel("stock", "Stock", _render, fragments={"f": _sync_render}),)
        ),
        "panel stock: fragment f must be an async function",
    ),
    "topics of two arguments": (
        dataclasses.replace(APP, panels=(Panel("stock", "Stock", _render, topics=_render),)),
        "panel stock: topics must be a function (params): it cannot be called with 1",
    ),
    "assets missing": (
        dataclasses.replace(APP, assets="/nonexistent/assets", scripts=("app.js",)),
        "App assets '/nonexistent/assets' is not a directory",
    ),
    # Ironstar's own tables
    "DDL drops checkpoint": (
        _extra(ddl=("DROP TABLE checkpoint",)),
        "projection extra: its DDL writes checkpoint, Ironstar's",
    ),
    "DDL alters dead letters": (
        _extra(ddl=('ALTER TABLE "main"."dead_letters" DROP COLUMN error',)),
        "projection extra: its DDL writes dead_letters, Ironstar's",
    ),
    "DDL drops the schema": (
        _extra(ddl=("DROP SCHEMA main CASCADE",)),
        "its DDL writes main, the database's schema",
    ),
    "apply deletes dead letters": (
        _extra(apply=("DELETE FROM dead_letters",)),
        "projection extra: apply statement 1 writes dead_letters, Ironstar's",
    ),
    "apply writes versions": (
        _extra(apply=("UPDATE aggregate_versions SET version = 0",)),
        "apply statement 1 writes aggregate_versions, versions's",
    ),
    "apply writes another projection's table": (
        _extra(apply=("DELETE FROM stock_levels WHERE sku IN (SELECT aggregate_id FROM batch)",)),
        "projection extra: apply statement 1 writes stock_levels, stock's",
    ),
    "query reads dead letters": (
        _query(sql="SELECT * FROM dead_letters"),
        "query stock/extra: its SQL names dead_letters, Ironstar's own",
    ),
    "query reads pending states": (
        _query(sql="SELECT * FROM main.aggregate_pending"),
        "its SQL names aggregate_pending, Ironstar's own",
    ),
    "view reads checkpoint": (
        _extra(ddl=("CREATE OR REPLACE VIEW x AS SELECT * FROM checkpoint",)),
        "projection extra: its DDL names checkpoint, Ironstar's own",
    ),
    "view reads dead letters by a string": (
        _extra(ddl=("CREATE OR REPLACE VIEW x AS SELECT * FROM query_table('dead_'||'letters')",)),
        "projection extra: its DDL calls query_table(), refused: ",
    ),
    "apply reads checkpoint by a list of strings": (
        _stock(apply=("INSERT INTO stock_levels SELECT * FROM query_table(['check'||'point'])",)),
        "projection stock: apply statement 1 calls query_table(), refused: ",
    ),
    "apply reads checkpoint": (
        _stock(apply=("INSERT INTO stock_levels SELECT * FROM checkpoint",)),
        "projection stock: apply statement 1 names checkpoint, Ironstar's own",
    ),
    "apply creates a table": (
        _stock(apply=("CREATE TABLE IF NOT EXISTS sneaky AS SELECT * FROM batch",)),
        "projection stock: apply statement 1 is CREATE; apply may only INSERT, UPDATE",
    ),
    "apply creates a type": (_stock(apply=("CREATE TYPE mood AS ENUM ('a')",)), "is CREATE;"),
    "apply resets a setting": (_stock(apply=("RESET threads",)), "apply statement 1 is RESET;"),
    "apply sets memory": (_stock(apply=("SET memory_limit='1MB'",)), "apply statement 1 is SET;"),
    "apply pragma": (_stock(apply=("PRAGMA threads=1",)), "apply statement 1 is PRAGMA;"),
    "apply pragma function": (_stock(apply=("PRAGMA enable_progress_bar",)), "1 is PRAGMA;"),
    "apply checkpoint": (_stock(apply=("CHECKPOINT",)), "apply statement 1 is CHECKPOINT;"),
    "apply install": (_stock(apply=("INSTALL json",)), "apply statement 1 is INSTALL;"),
    "apply vacuum": (_stock(apply=("VACUUM",)), "apply statement 1 is VACUUM;"),
    "apply load": (_stock(apply=("LOAD json",)), "apply statement 1 is LOAD;"),
    "apply call": (_stock(apply=("CALL pragma_version()",)), "apply statement 1 is CALL;"),
    "apply set variable": (_stock(apply=("SET VARIABLE x = 1",)), "apply statement 1 is SET;"),
    "apply detach": (_stock(apply=("DETACH IF EXISTS other",)), "apply statement 1 is DETACH;"),
    "apply commits": (_stock(apply=("COMMIT",)), "apply statement 1 is COMMIT;"),
    "apply rolls back": (_stock(apply=("ROLLBACK",)), "apply statement 1 is ROLLBACK;"),
    "apply selects": (_stock(apply=("SELECT * FROM batch",)), "apply statement 1 is SELECT;"),
    "apply indexes another's table": (
        _extra(apply=("CREATE INDEX i ON stock_levels (sku)",)),
        "projection extra: apply statement 1 writes stock_levels, stock's",
    ),
    "DDL indexes another's table": (
        _extra(ddl=("CREATE INDEX IF NOT EXISTS i ON stock_levels (sku)",)),
        "projection extra: its DDL writes stock_levels, stock's",
    ),
    "DDL replaces a macro": (
        _extra(ddl=("CREATE OR REPLACE MACRO checkpoint(a) AS a",)),
        "projection extra: its DDL creates a MACRO; DDL may only CREATE a TABLE, INDEX or VIEW",
    ),
    "DDL creates a schema": (_extra(ddl=("CREATE SCHEMA s2",)), "its DDL creates a SCHEMA;"),
    "DDL sets memory": (_extra(ddl=("SET memory_limit='1MB'",)), "its DDL is SET; DDL may only"),
    "DDL pragma": (_extra(ddl=("PRAGMA threads=1",)), "its DDL is PRAGMA; DDL may only"),
    "DDL then pragma": (
        _extra(ddl=("CREATE TABLE t (a INT); PRAGMA threads=1",)),
        "its DDL is CREATE, PRAGMA; DDL may only",
    ),
    "DDL temp table": (_extra(ddl=("CREATE TEMP TABLE t (a INT)",)), "its DDL creates a TEMP;"),
    "claims checkpoint": (
        _extra(tables=("checkpoint",)),
        "projection extra: table checkpoint is Ironstar's own",
    ),
    # messages
    "untagged command": (_aggregate(commands=Untagged), 'command Untagged needs tag_field="type"'),
    "untagged event": (_aggregate(events=Untagged), 'event Untagged needs tag_field="event_type"'),
    "event dict keyed by int": (
        _aggregate(events=domain.Event | Counted),
        "aggregate stock_item: event Counted holds a dict keyed by int;",
    ),
    "two commands one tag": (
        _aggregate(commands=domain.Command | Twin),
        "aggregate stock_item: two command types have the tag 'receive'",
    ),
    "event type in two aggregates": (
        dataclasses.replace(
            APP,
            aggregates=(STOCK_ITEM, dataclasses.replace(STOCK_ITEM, name="bin")),
            feeds=(*APP.feeds, Feed("bin", "stock", one="item")),
        ),
        "event type item_registered belongs to aggregates stock_item and bin",
    ),
    # containers of the wrong kind
    "critical list": (_aggregate(critical=["stock_shipped"]), "critical must be a frozenset"),
    "upcasters list": (_aggregate(upcasters=[dict]), "upcasters must be a dict"),
    "queries list": (_stock(queries=[Query(sql="SELECT 1")]), "queries must be a dict"),
    # numbers that are compared
    "version text": (_stock(version="1"), "projection stock: version must be an int ≥ 1, got '1'"),
    "schema 0": (
        _aggregate(schemas={"stock_received": 0}),
        "schema of stock_received must be an int ≥ 1, got 0",
    ),
    "upcaster beyond": (
        _aggregate(upcasters={**STOCK_ITEM.upcasters, ("stock_received", 2): dict}),
        "upcaster stock_received 2 → next is outside its schemas 1..2",
    ),
    # SQL
    "missing $param": (
        _query(sql="SELECT * FROM stock_levels WHERE on_hand > $minimum", params=Bounded),
        "query stock/extra: its SQL uses $minimum, which is not one of its params",
    ),
    "unknown table": (_query(sql="SELECT * FROM nope"), "query stock/extra: "),
    "unknown column": (_query(sql="SELECT nope FROM stock_levels"), "nope"),
    "apply syntax": (
        _stock(apply=("INSERT INTO stock_levels SELEC 1",)),
        "apply statement 1 does not parse",
    ),
    "apply unknown event type": (
        _stock(
            apply=(
                "INSERT INTO stock_levels SELECT * FROM batch "
                "WHERE event_type IN ('stock_shipped', 'shiped')",
            )
        ),
        "apply statement 1 reads event_type 'shiped', which no aggregate has",
    ),
    "apply unknown aggregate": (
        _stock(
            apply=(
                "DELETE FROM stock_levels WHERE sku IN "
                "(SELECT aggregate_id FROM batch WHERE aggregate_type = 'stock')",
            )
        ),
        "reads aggregate_type 'stock'",
    ),
    "DDL not idempotent": (
        _extra(ddl=("CREATE TABLE extra_rows (a INT)",), tables=("extra_rows",)),
        "projection extra: its DDL fails when run again, as at every start",
    ),
    "DDL syntax": (
        _extra(ddl=("CREATE TABL x (a INT)",)),
        "projection extra: its DDL does not parse",
    ),
    "tables not its DDL's": (_stock(tables=("levels",)), "table levels (tables=) is not a table"),
    "DDL table not declared": (
        _extra(ddl=("CREATE TABLE IF NOT EXISTS extra_rows (a INT)",)),
        "its DDL creates table extra_rows, not in tables=",
    ),
    # parameters and names
    "params list": (_query(sql="SELECT 1", params=Listed), "parameter skus cannot come in a query"),
    "params Struct": (_query(sql="SELECT 1", params=Deep), "parameter at cannot come in a query"),
    "params dict": (_query(sql="SELECT 1", params=dict), "params must be a msgspec Struct class"),
    "grant with a space": (_stock(grant="bill ing:*"), "grant 'bill ing:*' cannot be granted"),
    "app name empty": (dataclasses.replace(APP, name=""), "App name '' must be lowercase"),
    "panels twice": (
        dataclasses.replace(APP, panels=(APP.panels[0], APP.panels[0])),
        "panel name 'stock' is declared twice",
    ),
    "projection named live": (
        _extra(name="live"),
        "projection name 'live' is reserved",
    ),
    "feed one not one": (
        dataclasses.replace(APP, feeds=(Feed("stock_item", "stock", one="low"),)),
        "query stock/low must answer one aggregate (one=True)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_inconsistent_app_is_refused_with_one_line_naming_what_is_wrong(case: str) -> None:
    app, says = CASES[case]
    problems = Catalogue(app).check()
    assert any(says in problem for problem in problems), problems
    with pytest.raises(AppError) as refused:
        install(Catalogue(app))
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"app {app.name}: ")


class Open(Struct, frozen=True, tag="open", tag_field="type"):
    amount: int
    maybe: Annotated[int, Meta(ge=0)] | None = None
    fine: Annotated[int, Meta(ge=0, le=10)] = 0


def test_a_command_int_without_both_bounds_is_warned_about_not_refused() -> None:
    app = _aggregate(commands=domain.Command | Open)
    assert Catalogue(app).check() == []
    assert list(checks.unbounded(Catalogue(app))) == [
        "stock_item.Open.amount",
        "stock_item.Open.maybe",
    ]
    assert list(checks.unbounded(Catalogue(APP))) == []


def test_bounded_scalar_parameters_and_reads_of_the_engines_tables_are_accepted() -> None:
    app = _query(
        sql="""SELECT s.*, v.version FROM stock_levels AS s JOIN aggregate_versions AS v
               ON v.aggregate_id = s.sku WHERE s.sku = $sku AND s.on_hand < $limit LIMIT $limit""",
        params=Bounded,
    )
    assert Catalogue(app).check() == []
    words_in_strings = _extra(
        ddl=("CREATE OR REPLACE VIEW said AS SELECT 'create' AS a, 'checkpoint' AS b",),
    )
    assert Catalogue(words_in_strings).check() == []
    assert msgspec.convert({"sku": "a"}, Bounded).limit == 10
    assert isinstance(Aggregate, type)


def test_event_dicts_keyed_by_text_once_stored_are_accepted() -> None:
    app = _aggregate(events=domain.Event | Keyed)
    assert not [p for p in Catalogue(app).check() if "dict keyed by" in p]

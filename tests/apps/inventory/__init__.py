"""A second app, not the example: a warehouse's stock levels (for the e2e and contract tests)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from html import escape
from typing import Any

from msgspec import Struct

from common.app import Aggregate, App, DemoCommand, Feed, Panel, Patch, Projection, Query, Read
from common.envelope import Envelope
from tests.apps.inventory import domain

STOCK_ITEM = Aggregate(
    name="stock_item",
    initial=domain.Item(),
    decide=domain.decide,
    evolve=domain.evolve,
    commands=domain.Command,
    events=domain.Event,
    schemas=domain.SCHEMAS,
    upcasters=domain.UPCASTERS,
    critical=frozenset({"stock_shipped"}),
)


class Sku(Struct, frozen=True, forbid_unknown_fields=True):
    sku: str


class Below(Struct, frozen=True, forbid_unknown_fields=True):
    threshold: int = 10


class Level(Struct, frozen=True):
    sku: str
    name: str
    on_hand: int
    updated_seq: int


STOCK = Projection(
    name="stock",
    version=1,
    grant="stock_item",
    tables=("stock_levels",),
    ddl=(
        """CREATE TABLE IF NOT EXISTS stock_levels (
            sku VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, on_hand BIGINT NOT NULL,
            updated_seq BIGINT NOT NULL)""",
    ),
    apply=(
        """INSERT INTO stock_levels
           SELECT aggregate_id, payload->>'name', 0, sequence FROM batch
           WHERE event_type = 'item_registered'""",
        """UPDATE stock_levels AS s SET on_hand = s.on_hand + c.delta, updated_seq = c.seq
           FROM (SELECT aggregate_id AS sku, max(sequence) AS seq,
                        sum(CASE event_type WHEN 'stock_received' THEN 1 ELSE -1 END
                            * (payload->>'quantity')::BIGINT) AS delta
                 FROM batch WHERE event_type IN ('stock_received', 'stock_shipped')
                 GROUP BY ALL) AS c
           WHERE s.sku = c.sku""",
    ),
    queries={
        "item": Query(
            sql="SELECT * FROM stock_levels WHERE sku = $sku",
            params=Sku,
            result=Level,
            one=True,
            key="sku",
            missing="no item {sku!r}",
            description="One item's stock level.",
        ),
        "low": Query(
            sql="""SELECT * FROM stock_levels WHERE on_hand < $threshold
                   ORDER BY on_hand, sku LIMIT 100""",
            params=Below,
            result=list[Level],
            description="Items with fewer than `threshold` on hand.",
        ),
    },
)


async def _levels(ask: Any, params: Any) -> str:
    rows = await ask("stock", "low", {"threshold": 1_000_000}) or []
    items = "".join(_row(r) for r in rows)
    return f'<section class="panel stock"><h2>Stock</h2><ul id="stock">{items}</ul></section>'


def _row(row: dict[str, Any]) -> str:
    sku = escape(str(row["sku"]), quote=True)
    return (
        f'<li id="sku-{sku}"><b>{sku}</b> <span class="on-hand">{int(row["on_hand"])}</span></li>'
    )


def _patches(sequence: int, event: Envelope) -> list[Patch]:
    if event.event_type == "item_registered":
        row = {"sku": event.aggregate_id, "on_hand": 0}
        return [Patch(_row(row), "#stock", "append")]
    return []  # quantities arrive as the generic `event` signal


def _demo(rng: random.Random, read: Read) -> Iterator[DemoCommand]:
    skus = [f"sku-{n}" for n in range(5)]
    for sku in skus:
        yield "stock_item", sku, "register_item", {"name": sku.upper()}
    while True:
        kind = "receive" if rng.random() < 0.6 else "ship"
        yield "stock_item", rng.choice(skus), kind, {"quantity": rng.randint(1, 5)}


app = App(
    name="inventory",
    aggregates=(STOCK_ITEM,),
    projections=(STOCK,),
    feeds=(Feed("stock_item", "stock", one="item", every="low"),),
    panels=(Panel("stock", "Stock", _levels, _patches),),
    demo=_demo,
)

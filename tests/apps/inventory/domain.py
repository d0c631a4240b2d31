"""`stock_item`: an item of a warehouse's stock (pure: msgspec and the rule helpers)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct
from msgspec.structs import replace

from common.errors import RuleViolation

Quantity = Annotated[int, Meta(ge=1, le=1_000_000)]


class RegisterItem(
    Struct, frozen=True, tag="register_item", tag_field="type", forbid_unknown_fields=True
):
    name: Annotated[str, Meta(min_length=1, max_length=100)]


class Receive(Struct, frozen=True, tag="receive", tag_field="type", forbid_unknown_fields=True):
    quantity: Quantity


class Ship(Struct, frozen=True, tag="ship", tag_field="type", forbid_unknown_fields=True):
    quantity: Quantity


Command = RegisterItem | Receive | Ship


class ItemRegistered(Struct, frozen=True, tag="item_registered", tag_field="event_type"):
    name: str


class StockReceived(Struct, frozen=True, tag="stock_received", tag_field="event_type"):
    quantity: int


class StockShipped(Struct, frozen=True, tag="stock_shipped", tag_field="event_type"):
    quantity: int


Event = ItemRegistered | StockReceived | StockShipped

# v1 of `stock_received` called the quantity `qty`.
SCHEMAS = {"stock_received": 2}


def _received_v1_to_v2(payload: dict[str, object]) -> dict[str, object]:
    return {"quantity": payload["qty"]}


UPCASTERS = {("stock_received", 1): _received_v1_to_v2}


class Item(Struct, frozen=True):
    registered: bool = False
    on_hand: int = 0


def _require(condition: bool, rule: str) -> None:
    if not condition:
        raise RuleViolation(rule)


def decide(state: Item, command: Command) -> list[Event]:
    match command:
        case RegisterItem(name=name):
            _require(not state.registered, "this item is registered already")
            return [ItemRegistered(name=name)]
        case Receive(quantity=quantity):
            _require(state.registered, "register the item first")
            return [StockReceived(quantity=quantity)]
        case Ship(quantity=quantity):
            _require(state.registered, "register the item first")
            _require(quantity <= state.on_hand, f"only {state.on_hand} on hand")
            return [StockShipped(quantity=quantity)]


def evolve(state: Item, event: Event) -> Item:
    match event:
        case ItemRegistered():
            return Item(registered=True)
        case StockReceived(quantity=quantity):
            return replace(state, on_hand=state.on_hand + quantity)
        case StockShipped(quantity=quantity):
            return replace(state, on_hand=state.on_hand - quantity)

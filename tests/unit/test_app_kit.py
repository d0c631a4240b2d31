"""The test kit on two apps: deciders given/when/then, projections given events/then a query."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import pytest
from msgspec import Meta, Struct

from common.app import Projection
from common.errors import Invalid, RuleViolation
from examples.todo import TODO_LIST
from examples.todo import app as todo_app
from examples.todo.todo_list import AddTodo, TodoAdded, TodoCompleted, TodoDeleted, TodoRenamed
from examples.todo.user_profile import ProfileUpdated, UserDeactivated, UserRegistered
from ironstar.testing import contract, given, project
from tests.apps.inventory import STOCK_ITEM
from tests.apps.inventory import app as inventory
from tests.apps.inventory.domain import ItemRegistered, Ship, StockReceived, StockShipped


def test_a_decider_given_events_decides_the_next_ones() -> None:
    given(TODO_LIST).when(AddTodo("milk", " Milk ")).then(TodoAdded("milk", "Milk"))
    given(TODO_LIST, TodoAdded("milk", "Milk")).when(("complete_todo", {"todo_id": "milk"})).then(
        TodoCompleted("milk")
    )


def test_a_decider_refusal_names_its_rule_and_a_bad_shape_names_its_field() -> None:
    given(TODO_LIST, TodoAdded("milk", "Milk")).when(AddTodo("milk", "again")).refused(
        RuleViolation, "already exists"
    )
    given(TODO_LIST).when(("add_todo", {"todo_id": "x"})).refused(Invalid, "text")
    given(STOCK_ITEM, ItemRegistered("bolt"), StockReceived(2)).when(Ship(3)).refused(
        RuleViolation, "only 2 on hand"
    )


def test_a_command_that_changes_nothing_decides_no_events() -> None:
    done = (TodoAdded("milk", "Milk"), TodoCompleted("milk"))
    given(TODO_LIST, *done).when(("complete_todo", {"todo_id": "milk"})).then()


def test_todo_lists_answers_the_list_after_its_events_in_one_or_many_batches() -> None:
    events = [
        ("todo_list", "home", TodoAdded("a", "one")),
        ("todo_list", "home", TodoAdded("b", "two")),
        ("todo_list", "home", TodoRenamed("a", "uno")),
        ("todo_list", "home", TodoCompleted("b")),
        ("todo_list", "home", TodoDeleted("b")),
    ]
    for batches in (1, 2, 5):
        answer = project(todo_app, *events, batches=batches).query(
            "todo_lists", "get", list_id="home"
        )
        assert answer["items"] == [
            {"todo_id": "a", "text": "uno", "completed": False, "updated_seq": 3}
        ]
        assert (answer["active"], answer["completed"]) == (1, 0)


def test_user_profiles_keep_the_last_name_and_the_deactivation() -> None:
    view = project(
        todo_app,
        ("user_profile", "ada", UserRegistered("Ada", "ada@example.org")),
        ("user_profile", "ada", ProfileUpdated(name="Ada L.")),
        ("user_profile", "ada", UserDeactivated()),
    )
    user = view.query("user_profiles", "get", user_id="ada")
    assert (user["name"], user["email"], user["active"]) == ("Ada L.", "ada@example.org", False)


def test_analytics_counts_each_command_once_and_each_event() -> None:
    view = project(
        todo_app, ("todo_list", "l", TodoAdded("a", "x")), ("todo_list", "l", TodoCompleted("a"))
    )
    totals = view.query("analytics", "totals")
    assert (totals["events"], totals["commands"], totals["completed"]) == (2, 2, 1)


def test_the_inventory_projection_sums_what_was_received_and_shipped() -> None:
    view = project(
        inventory,
        ("stock_item", "bolt", ItemRegistered("Bolt")),
        ("stock_item", "bolt", StockReceived(10)),
        ("stock_item", "bolt", StockShipped(4)),
        ("stock_item", "nut", ItemRegistered("Nut")),
        batches=2,
    )
    assert view.query("stock", "item", sku="bolt")["on_hand"] == 6
    assert [r["sku"] for r in view.query("stock", "low", threshold=7)] == ["nut", "bolt"]


def test_an_event_the_engine_cannot_apply_fails_the_projection_naming_it() -> None:
    impossible = ("todo_list", "l1", TodoCompleted("t1"))  # a todo never added
    said = r"#2 \(todo_list 'l1' todo_completed\): .*todo 't1' is not in the list"
    with pytest.raises(AssertionError, match=said):
        project(todo_app, ("todo_list", "l2", TodoAdded("t1", "milk")), impossible)
    view = project(todo_app, impossible, dead_ok=True)
    assert [(n, subject) for n, subject, _ in view.dead_letters] == [
        (1, "ironstar.events.todo_list.l1")
    ]


def test_an_unknown_aggregate_type_is_named_with_the_known_ones() -> None:
    with pytest.raises(AssertionError, match="no aggregate type 'nope'; known: todo_list, user"):
        project(todo_app, ("nope", "x", TodoCompleted("t1")))


_BY_AGGREGATE = (  # reads every event of the aggregate: ItemRegistered has no quantity
    "INSERT INTO per_item SELECT aggregate_id, sum((payload->>'quantity')::BIGINT), count(*) "
    "FROM batch WHERE aggregate_type = 'stock_item' GROUP BY aggregate_id "
    "ON CONFLICT DO UPDATE SET total = per_item.total + excluded.total, n = per_item.n + excluded.n"
)
_OVERWRITES = (  # the last batch's count, not the count of events
    "INSERT INTO per_item SELECT aggregate_id, 0, count(*) FROM batch "
    "WHERE event_type IN ('item_registered', 'stock_received') GROUP BY aggregate_id "
    "ON CONFLICT DO UPDATE SET n = excluded.n"
)


@pytest.mark.parametrize(
    ("apply", "says"),
    [(_BY_AGGREGATE, "applied one event per batch, 1 event(s) could not be applied"),
     (_OVERWRITES, "projection per_item: table per_item holds [('bolt', 0, 2)] applied in one")],
    ids=["fails alone", "differs alone"],
)  # fmt: skip
def test_a_projection_whose_rows_depend_on_batching_fails_naming_the_rule(
    apply: str, says: str
) -> None:
    per_item = Projection(
        name="per_item",
        version=1,
        tables=("per_item",),
        ddl=(
            "CREATE TABLE IF NOT EXISTS per_item "
            "(id VARCHAR PRIMARY KEY, total BIGINT NOT NULL, n BIGINT NOT NULL)",
        ),
        apply=(apply,),
    )
    app = dataclasses.replace(inventory, projections=(*inventory.projections, per_item))
    with pytest.raises(AssertionError) as failed:
        project(
            app,
            ("stock_item", "bolt", ItemRegistered("bolt")),
            ("stock_item", "bolt", StockReceived(5)),
        )
    assert says in str(failed.value)
    assert "its rows must not depend on batching" in str(failed.value)


def test_the_contract_applies_the_apps_own_history_in_one_batch_and_one_per_batch() -> None:
    counted = Projection(
        name="counted",
        version=1,
        tables=("counted",),
        ddl=("CREATE TABLE IF NOT EXISTS counted (id VARCHAR PRIMARY KEY, n BIGINT NOT NULL)",),
        apply=(  # the last batch's count per list, not its count of events
            "INSERT INTO counted SELECT aggregate_id, count(*) FROM batch "
            "WHERE event_type = 'todo_added' GROUP BY aggregate_id "
            "ON CONFLICT DO UPDATE SET n = excluded.n",
        ),
    )
    app = dataclasses.replace(todo_app, projections=(*todo_app.projections, counted))
    with pytest.raises(AssertionError) as failed:
        contract(app)
    assert "projection counted: table counted holds" in str(failed.value)


class _Bounded(Struct, frozen=True, tag="stock_received", tag_field="event_type"):
    quantity: Annotated[int, Meta(ge=1, le=10)]


class _Loose(_Bounded, frozen=True, tag="stock_received", tag_field="event_type"):
    quantity: int  # the declared event bounds it to 1..10: this subclass does not


def test_a_decided_event_is_held_to_the_declared_events_bounds_not_its_own_class() -> None:
    for event in (_Bounded(quantity=11), _Loose(quantity=10**30)):
        aggregate = dataclasses.replace(
            STOCK_ITEM,
            events=_Bounded,
            decide=lambda state, command, e=event: [e],
            evolve=lambda state, event: state,
        )
        with pytest.raises(TypeError, match="its own Struct refuses"):
            aggregate.decided(STOCK_ITEM.initial, None)


class _Noted(Struct, tag="stock_received", tag_field="event_type"):
    text: str

    def __post_init__(self) -> None:  # runs again for every reader (verify11b N1)
        self.text += "!"


class _Anything(Struct, frozen=True, tag="stock_received", tag_field="event_type"):
    value: Any


@pytest.mark.parametrize("event", [_Noted(text="a"), _Anything(value={"k": (1, 2)})])
def test_a_decided_event_that_storing_changes_is_never_stored(event: Any) -> None:
    aggregate = dataclasses.replace(
        STOCK_ITEM,
        events=type(event),
        decide=lambda state, command: [event],
        evolve=lambda state, event: state,
    )
    with pytest.raises(TypeError, match="that storing changes: read back it is"):
        aggregate.decided(STOCK_ITEM.initial, None)
    same = dataclasses.replace(aggregate, decide=lambda state, command: [_Anything(value=[1])])
    assert dataclasses.replace(same, events=_Anything).decided(STOCK_ITEM.initial, None)

"""The example app: todo lists and user profiles (what `ironstar up` serves by default).

Loaded like any other app (`IRONSTAR_APP=examples.todo`); nothing in Ironstar's own
packages knows about todos.
"""

from __future__ import annotations

from pathlib import Path

from common.app import Aggregate, App, Feed
from examples.todo import demo, history, todo_list, user_profile
from examples.todo.panels import PANELS
from examples.todo.projections import analytics, todo_lists, user_profiles

TODO_LIST = Aggregate(
    name="todo_list",
    initial=todo_list.INITIAL,
    decide=todo_list.decide,
    evolve=todo_list.evolve,
    commands=todo_list.Command,
    events=todo_list.Event,
    schemas=todo_list.SCHEMAS,
    upcasters=todo_list.UPCASTERS,
    critical=todo_list.CRITICAL,
)
USER_PROFILE = Aggregate(
    name="user_profile",
    initial=user_profile.INITIAL,
    decide=user_profile.decide,
    evolve=user_profile.evolve,
    commands=user_profile.Command,
    events=user_profile.Event,
    schemas=user_profile.SCHEMAS,
    critical=user_profile.CRITICAL,
)

app = App(
    name="todo",
    aggregates=(TODO_LIST, USER_PROFILE),
    projections=(todo_lists.projection, user_profiles.projection, analytics.projection),
    feeds=(
        Feed("todo_list", "todo_lists", one="get", every="lists"),
        Feed("user_profile", "user_profiles", one="get", every="list"),
    ),
    panels=PANELS,
    demo=demo.demo,
    events=history.events,
    assets=str(Path(__file__).with_name("static")),
    scripts=("todo.js",),
    aliases={  # the example's paths from before `/api/read/{projection}/{query}`
        "/api/todo-lists": ("todo_lists", "lists"),
        "/api/todo-lists/{list_id}": ("todo_lists", "get"),
        "/api/users": ("user_profiles", "list"),
        "/api/users/{user_id}": ("user_profiles", "get"),
        "/api/analytics/{query}": ("analytics", ""),
    },
)

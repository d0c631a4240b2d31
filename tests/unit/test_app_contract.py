"""The contract every loaded app holds to (`ironstar.testing.contract`, ironstar/contract.py).

Apps: the example (`examples.todo`), the second app (`tests.apps.inventory`), the app
`ironstar new` scaffolds, and the app `IRONSTAR_APP` names when it is set (so
`IRONSTAR_APP=shop pytest tests/unit/test_app_contract.py` checks the app `shop`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import pytest

from common import catalogue
from common.app import App
from common.settings import APP_VARIABLE
from ironstar.scaffold import write_app
from ironstar.testing import contract

APPS = ["examples.todo", "tests.apps.inventory", "scaffolded"]
if os.environ.get(APP_VARIABLE, "").strip() not in ("", *APPS):
    APPS.append(os.environ[APP_VARIABLE].strip())


@pytest.fixture(params=APPS)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> App:
    name = request.param
    if name == "scaffolded":
        root = tmp_path_factory.mktemp("scaffold")
        write_app(root, "billing")
        sys.path.insert(0, str(root))
        name = "billing"
    return catalogue.load(name).app


def test_every_loaded_app_holds_to_the_contract(app: App) -> None:
    contract(app)


def test_a_broken_contract_is_named(app: App) -> None:
    feeds = tuple(f for f in app.feeds if f.aggregate != app.aggregates[0].name)
    with pytest.raises(AssertionError, match=app.aggregates[0].name):
        contract(replace(app, feeds=feeds))
    wrong = replace(app.feeds[0], every="no_such_query")
    with pytest.raises(AssertionError, match="no_such_query"):
        contract(replace(app, feeds=(wrong, *app.feeds[1:])))

"""`app.json`: the app a stack runs, recorded so the CLI loads that app, not its own."""

from __future__ import annotations

import sys
from pathlib import Path

from common import catalogue
from common.settings import NatsSettings
from ironstar import local
from ironstar.scaffold import write_app

ROOT = Path(__file__).parents[2]


def test_the_record_names_the_module_its_import_root_and_first_aggregate(tmp_path: Path) -> None:
    local.record_app(tmp_path, "tests.apps.inventory")
    assert local.running_app(tmp_path) == {
        "name": "tests.apps.inventory",
        "path": str(ROOT.resolve()),
        "aggregate": "stock_item",
    }


def test_a_target_loads_the_recorded_app_from_its_directory(tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    write_app(apps, "ledger_rec")
    sys.path.insert(0, str(apps))
    try:
        local.record_app(tmp_path, "ledger_rec")
    finally:
        sys.path.remove(str(apps))
        sys.modules.pop("ledger_rec", None)
    recorded = local.running_app(tmp_path)
    assert recorded == {"name": "ledger_rec", "path": str(apps), "aggregate": "ledger_rec"}
    previous = catalogue.current()
    try:
        target = local.Target(NatsSettings(), None, "test", app=recorded)
        assert target.probe_aggregate() == "ledger_rec"  # from the record, nothing imported
        assert "ledger_rec" not in sys.modules
        assert set(target.load_app().aggregates) == {"ledger_rec"}
    finally:
        catalogue.install(previous)


def test_an_app_that_cannot_be_imported_is_recorded_by_name_only(tmp_path: Path) -> None:
    local.record_app(tmp_path, "no_such_app_here")
    assert local.running_app(tmp_path) == {"name": "no_such_app_here"}

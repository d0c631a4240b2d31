"""An app that cannot load is one line, never a traceback: a package that does not parse or
raises at import, a path for a name. (The command line's half, exit 2 and one line also for
an app without demo traffic or history: tests/e2e/test_cli_refusals.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.catalogue import AppError, load
from ironstar.processes import last_line
from tests.support.broken_apps import BROKEN, write_apps


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(write_apps(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_package_failing_at_import_is_one_line_naming_file_and_line(
    apps: Path, name: str
) -> None:
    with pytest.raises(AppError, match=BROKEN[name][1]) as caught:
        load(name)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"IRONSTAR_APP={name}: ")


@pytest.mark.parametrize("name", ["../billing", "billing/", "./billing", ".billing", "a..b", ""])
def test_a_path_or_relative_name_is_refused_as_not_a_package_name(name: str) -> None:
    with pytest.raises(AppError, match="not a package name"):
        load(name)


def test_the_last_line_of_a_failed_child_is_its_error_not_a_traceback_caret(
    tmp_path: Path,
) -> None:
    log = tmp_path / "child.log"
    log.write_text(
        "starting\nTraceback (most recent call last):\n"
        '  File "/x/readmodel.py", line 9, in apply\n'
        "    con.execute(statement)\n    ~~~~~~~~~~~^^^^^^^^^^^\n"
        "_duckdb.ParserException: Parser Error: syntax error at or near 'TABL'\n"
        "\n             ^^^^^^\n  \n"
    )
    assert last_line(log) == "_duckdb.ParserException: Parser Error: syntax error at or near 'TABL'"

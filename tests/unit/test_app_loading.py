"""An app that cannot load or cannot do what is asked is one line and exit 2, never a
traceback: a package that does not parse or raises at import, a path for a name, an app
without demo traffic or history for `demo`, `up --demo`, `bench project`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.catalogue import AppError, load
from ironstar.processes import last_line

ROOT = Path(__file__).parents[2]
BROKEN = {
    "parses_not": ("from common.app import App\napp = App(name='x',\n", r"__init__.py:2: Syntax"),
    "exits_at_import": ("import sys\n\nsys.exit(3)\n", r"__init__.py:3: SystemExit: 3"),
    "raises_at_import": (
        "import os\n\nCONFIG = {}\nTOKEN = CONFIG['token']\n",
        r"__init__.py:4: KeyError: 'token'",
    ),
}
NO_DEMO = """from tests.apps.inventory import app as inventory
import dataclasses
app = dataclasses.replace(inventory, name="nodemo", demo=None)
"""


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, (source, _) in {**BROKEN, "nodemo": (NO_DEMO, "")}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(source)
    monkeypatch.chdir(tmp_path)
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


def _ironstar(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IRONSTAR_APP": "nodemo"}
    return subprocess.run(
        [sys.executable, "-m", "ironstar", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("demo", "--url", "http://127.0.0.1:9", "--duration", "1"), "declares no demo traffic"),
        (("up", "--app", "nodemo", "--demo", "--data-dir", "d"), "declares no demo traffic"),
        (("bench", "project", "--events", "10"), "declares no history"),
        (("up", "--app", "../nodemo", "--data-dir", "d"), "not a package name"),
        (("up", "--app", "raises_at_import", "--data-dir", "d"), "__init__.py:4: KeyError"),
    ],
    ids=["demo", "up --demo", "bench project", "up --app path", "up --app raising"],
)
def test_the_command_line_says_what_the_app_cannot_do_in_one_line_with_exit_2(
    apps: Path, args: tuple[str, ...], says: str
) -> None:
    done = _ironstar(apps, *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert not (apps / "d").exists() or not any((apps / "d").iterdir())  # nothing started


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

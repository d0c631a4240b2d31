"""App packages that cannot load, or cannot do what a command asks: what the app-loading
tests feed Ironstar (tests/unit/test_app_loading.py: the loader; tests/e2e/test_cli_refusals.py:
the command line)."""

from __future__ import annotations

from pathlib import Path

# package name -> (its __init__.py, the pattern of the one line that refuses it)
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


def write_apps(directory: Path) -> Path:
    """Write every package of `BROKEN` and `nodemo` (the inventory app without demo
    traffic) into `directory`; return it."""
    for name, (source, _) in {**BROKEN, "nodemo": (NO_DEMO, "")}.items():
        (directory / name).mkdir()
        (directory / name / "__init__.py").write_text(source)
    return directory

"""`ironstar new NAME`: write the smallest working app as a package in a directory.

The files come from `ironstar/templates/app/*.tmpl` with `${name}` (the package, which is
also the aggregate's name) and `${upper}` filled in: one aggregate, one projection in SQL,
one query, one dashboard panel, and tests that pass with `pytest NAME`.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from importlib.resources import files
from pathlib import Path
from string import Template

from common.errors import Invalid

LONGEST = 57  # its projection `<name>_totals` is a name of at most 64 characters
# Ironstar's own top-level packages: an app named so would shadow one or be shadowed by it
OWN = frozenset({"common", "writer", "projector", "gateway", "ironstar", "examples", "tests"})


def refusal(name: str) -> str | None:
    """Why `name` cannot be an app's name (one line), or None when it can. It is the
    package's import name and its aggregate's name (a NATS subject token, common/subjects.py),
    so: a lowercase identifier starting with a letter, at most LONGEST characters, not a
    keyword."""
    shown = repr(name[:60]) + ("..." if len(name) > 60 else "")
    if not name.isidentifier() or keyword.iskeyword(name):
        return f"the app name {shown} is not a Python identifier (letters, digits, _), e.g. billing"
    if len(name) > LONGEST:
        return f"the app name is {len(name)} characters long; at most {LONGEST} are allowed"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return (
            f"the app name {shown} must start with a lowercase letter and hold only a-z, 0-9 "
            "and _ (it also names the aggregate type, a NATS subject token), e.g. billing"
        )
    return None


def shadowed(name: str) -> str | None:
    """Why a new package `name` could never load as the app (one line), or None: a module
    of that name is importable already (Ironstar's own, the standard library, an installed
    package), and would be loaded instead of the app or broken by it."""
    if name in OWN or name in sys.stdlib_module_names or importlib.util.find_spec(name):
        what = "Ironstar's own" if name in OWN else "an importable"
        return (
            f"{name!r} is {what} module's name already: an app package named so would be "
            "shadowed by it or shadow it; pick another name, e.g. my_" + name
        )
    return None


def write_app(root: Path, name: str) -> list[Path]:
    """Write package `name` under `root`; returns the files written. Invalid (field
    "name") for a name `refusal` refuses, or a package that exists."""
    if why := refusal(name):
        raise Invalid(why, field="name")
    package = root / name
    if package.exists():
        raise Invalid(f"{package} exists already; pick another name or directory", field="name")
    package.mkdir(parents=True)
    written = []
    for template in sorted(files("ironstar").joinpath("templates/app").iterdir(), key=str):
        if not template.name.endswith(".tmpl"):
            continue
        text = Template(template.read_text(encoding="utf-8"))
        target = package / template.name.removesuffix(".tmpl")
        target.write_text(text.substitute(name=name, upper=name.upper()), encoding="utf-8")
        written.append(target)
    return written

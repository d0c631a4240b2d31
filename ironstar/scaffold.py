"""`ironstar new NAME`: write the smallest working app as a package in a directory.

The files come from `ironstar/templates/app/*.tmpl` with `${name}` (the package, which is
also the aggregate's name) and `${upper}` filled in: one aggregate, one projection in SQL,
one query, one dashboard panel, and tests that pass with `pytest NAME`.
"""

from __future__ import annotations

import keyword
import re
from importlib.resources import files
from pathlib import Path
from string import Template

from common.errors import Invalid

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def write_app(root: Path, name: str) -> list[Path]:
    """Write package `name` under `root`; returns the files written. Refuses a name that
    is not a lowercase Python identifier or a package that exists."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise Invalid(
            f"the app name {name[:60]!r} must be a lowercase Python identifier "
            "(letters, digits, _), e.g. billing",
            field="name",
        )
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

"""The catalogue: one index of the loaded app that every service reads per-domain facts from.

`load("examples.todo")` imports the package named by `IRONSTAR_APP` (the current
directory is on the import path, so a package there loads) and takes its `app`.
`Catalogue.check()` lists what is missing or inconsistent; services call `install`,
which refuses to start with one line naming the first problem. Each process installs
one catalogue at its composition root; `current()` returns it (loading the default app
the first time when nothing was installed, e.g. in a unit test).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec
import structlog

from common import builtin, checks
from common.app import Aggregate, App, Feed, Projection, Query
from common.errors import Invalid, NotFound
from common.settings import DEFAULT_APP, app_name

_ALIAS_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_PARAM_IN_ERROR = re.compile(r"at `\$\.(\w+)|field `(\w+)`")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


_OWN = tuple(str(Path(__file__).parents[1] / part) for part in
             ("common", "projector", "gateway", "writer", "ironstar"))  # fmt: skip


def _raised(exc: BaseException, app_only: bool = False) -> str:
    """`file:line: Type: message` of where `exc` was raised, in one line; with
    `app_only`, the last frame in the app's own files (none of Ironstar's internals)."""
    frames = list(traceback.extract_tb(exc.__traceback__))
    if app_only:
        frames = [frame for frame in frames if not frame.filename.startswith(_OWN)]
    where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
    return where + " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


log = structlog.get_logger()


class AppError(Exception):
    """The app cannot run: the message is the one line a service prints before refusing."""


def load(name: str = DEFAULT_APP) -> Catalogue:
    """Import package `name` and index its `app`; AppError when it is not one (not a
    dotted module name, not found, or failing at import: naming the file and line)."""
    if not _MODULE.fullmatch(name):
        raise AppError(
            f"IRONSTAR_APP={name[:80]}: not a package name (dotted Python identifiers, "
            "e.g. billing or apps.billing); run from the directory that holds the package"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a package in the current directory loads
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise AppError(f"IRONSTAR_APP={name}: cannot import it ({exc})") from None
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}"
        raise AppError(f"IRONSTAR_APP={name}: {where}: SyntaxError: {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # the package raised at import: say where, in one line
        raise AppError(f"IRONSTAR_APP={name}: importing it raised {_raised(exc)}") from None
    app = getattr(module, "app", None)
    if not isinstance(app, App):
        raise AppError(
            f"IRONSTAR_APP={name}: {getattr(module, '__file__', None) or name} has no "
            "`app = App(...)` (another module of that name shadows the app?)"
        )
    try:
        return Catalogue(app)
    except Exception as exc:  # e.g. aggregates that are not Aggregate(...)s
        raise AppError(f"IRONSTAR_APP={name}: its app cannot be read: {_raised(exc)}") from None


class Catalogue:
    """One app's declarations indexed by name: its aggregates, its projections (the built-in ones
    first), its feeds by aggregate, and the event types no feed may debounce (`critical`). Built
    once per process (`install`); lookups raise NotFound (404) naming what is known."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.aggregates: dict[str, Aggregate] = {a.name: a for a in app.aggregates}
        # Every app gets the built-in `versions` and `stream` projections first (their
        # tables may be read by the app's views and queries).
        self.projections: dict[str, Projection] = {
            p.name: p for p in (*builtin.BUILT_IN, *app.projections)
        }
        self.feeds: dict[str, Feed] = {f.aggregate: f for f in app.feeds}
        self.critical = frozenset().union(*(a.critical for a in app.aggregates))

    @cached_property
    def command_types(self) -> frozenset[str]:
        """Every command type of every aggregate."""
        return frozenset().union(*(a.command_types for a in self.aggregates.values()))

    def aggregate(self, name: str) -> Aggregate:
        """The aggregate `name`; NotFound (404, field `aggregate_type`) naming the known ones."""
        found = self.aggregates.get(name)
        if found is None:
            known = ", ".join(sorted(self.aggregates))
            raise NotFound(
                f"unknown aggregate type {name[:80]!r}; known: {known}", field="aggregate_type"
            )
        return found

    def projection(self, name: str) -> Projection:
        """The projection `name`; NotFound (404, field `projection`) naming the known ones."""
        found = self.projections.get(name)
        if found is None:
            known = ", ".join(sorted(self.projections))
            raise NotFound(f"no projection {name[:80]!r}; known: {known}", field="projection")
        return found

    def query(self, projection: str, name: str) -> Query:
        """The query `name` of `projection`; NotFound (404, field `projection` or `query`) naming
        the known ones."""
        queries = self.projection(projection).queries
        found = queries.get(name)
        if found is None:
            known = ", ".join(sorted(queries))
            raise NotFound(
                f"{projection} has no query {name[:80]!r}; known: {known}", field="query"
            )
        return found

    def params(self, projection: str, name: str, values: Mapping[str, Any]) -> Any:
        """An instance of the query's `params` Struct from strings or JSON values; NotFound
        (404) for an unknown query, Invalid (422, naming the field) for a bad value."""
        query = self.query(projection, name)
        try:
            return msgspec.convert(dict(values), query.params, strict=False)
        except msgspec.ValidationError as exc:
            named = _PARAM_IN_ERROR.search(str(exc))  # "... - at `$.limit`", "field `id`"
            field = (named.group(1) or named.group(2))[:64] if named else "params"
            raise Invalid(f"{projection}/{name} parameters: {exc}", field=field) from None

    def alias(self, path: str) -> tuple[str, str, dict[str, str]] | None:
        """(projection, query, path params) of an alias path, or None."""
        parts = path.strip("/").split("/")
        for template, (projection, query) in self.app.aliases.items():
            pattern = template.strip("/").split("/")
            if len(pattern) != len(parts):
                continue
            found: dict[str, str] = {}
            for want, got in zip(pattern, parts, strict=True):
                param = _ALIAS_PARAM.fullmatch(want)
                if param:
                    found[param.group(1)] = got
                elif want != got:
                    break
            else:
                name = found.pop("query", query)
                return projection, name, found
        return None

    def check(self) -> list[str]:
        """Every problem of the app, one line each (empty: ready to run): its declarations
        (`common.checks`), then, when they hold, its SQL against DuckDB
        (`projector.app_sql`, imported here: the projector's modules import this one)."""
        found: list[str] = []
        try:
            for problem in checks.problems(self):
                found.append(problem)
            if not found:
                from projector import app_sql

                for problem in app_sql.problems(self):
                    found.append(problem)
        except Exception as exc:  # a declaration of a shape no check foresaw
            found.append(f"its declarations cannot be read: {_raised(exc, app_only=True)}")
        return found


_cached: Catalogue | None = None


def install(catalogue: Catalogue) -> Catalogue:
    """Make `catalogue` this process's; AppError naming the first problem if it has any."""
    global _cached
    problems = catalogue.check()
    if problems:
        raise AppError(f"app {catalogue.app.name}: {problems[0]}")
    for warning in checks.unbounded(catalogue):
        log.warning("app_unbounded_int", app=catalogue.app.name, field=warning)
    _cached = catalogue
    return catalogue


def current() -> Catalogue:
    """This process's catalogue (the app of `IRONSTAR_APP`, default the example)."""
    return _cached or install(load(app_name()))


def aggregate(name: str) -> Aggregate:
    """The current app's aggregate `name` (404 naming the known ones)."""
    return current().aggregate(name)

"""The app's functions, as `Catalogue.check` sees them: callable with their arguments, and
plain or async as Ironstar calls them.

Ironstar calls `decide`, `evolve`, hooks, upcasters, queries' `run` and the panels' helpers
without awaiting (`plain`), and awaits panel renders and fragments (`is_async`). A function
is read by its signature; only `decide` and `evolve`, which are pure, are also called with
a probe (`gives_awaitable`) to catch a plain function that returns a coroutine.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from inspect import (
    isasyncgen,
    isasyncgenfunction,
    isawaitable,
    iscoroutine,
    iscoroutinefunction,
    unwrap,
)
from inspect import signature as inspect_signature
from typing import Any


def plain(what: str, function: Any, shape: str) -> Iterator[str]:
    """`what` must be a plain (not async) function taking the arguments `shape` names:
    Ironstar calls it without awaiting, so a coroutine would never run."""
    count = shape.count(",") + 1
    if not callable(function):
        yield f"{what} must be a function {shape}, got a {type(function).__name__}"
    elif not takes(function, count):
        yield f"{what} must be a function {shape}: it cannot be called with {count} argument(s)"
    elif _awaited(function):
        yield f"{what} must be a plain function {shape}, not async (it is never awaited)"


def takes(function: Any, count: int) -> bool:
    """`function` can be called with `count` positional arguments."""
    if not callable(function):
        return False
    try:
        inspect_signature(function).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): trust it
        pass
    return True


def is_async(function: Any) -> bool:
    """An async def (or an instance whose __call__ is one)."""
    call = getattr(function, "__call__", None)  # noqa: B004 (an instance's async __call__)
    return iscoroutinefunction(function) or iscoroutinefunction(call)


def _awaited(function: Any) -> bool:
    """What `function` gives must be awaited or iterated with `async for`: an async def or
    async generator, itself, as an instance's __call__, or under `functools.wraps`."""
    call = getattr(function, "__call__", None)  # noqa: B004 (an instance's async __call__)
    for candidate in (function, call, unwrap(function) if callable(function) else None):
        if iscoroutinefunction(candidate) or isasyncgenfunction(candidate):
            return True
    return False


def gives_awaitable(function: Any, *probe: Any) -> bool:
    """Whether `function(*probe)` answers an awaitable or an async iterator: a plain
    function that calls an async one. Only for pure functions (`decide`, `evolve`): a
    probe is no real message, so whatever it raises says nothing; a coroutine it gives
    is closed unstarted (its body never runs)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "coroutine ... was never awaited"
            answer = function(*probe)
    except Exception:
        return False
    if iscoroutine(answer):
        answer.close()
        return True
    return isawaitable(answer) or isasyncgen(answer)

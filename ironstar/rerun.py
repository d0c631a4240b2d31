"""The command the user ran, again with some options changed: hints that stay valid.

A hint after a refusal (a busy port, a data dir in use) repeats what the user typed with
only the options it must change, so their other arguments (`--data-dir`, `--demo`, ...)
are kept. `make run` sets `IRONSTAR_RUN_BY=make` for `ironstar up`, so its hint is a
`make run ARGS='...'` line again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

RUN_BY = "IRONSTAR_RUN_BY"


def cli_command() -> str:
    """What to type for `ironstar` in this shell: the name if PATH finds this one, else a path."""
    here = Path(sys.executable).parent / "ironstar"
    found = shutil.which("ironstar")
    if found and Path(found).resolve() == here.resolve():
        return "ironstar"
    try:
        return str(here.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(here)


def replaced(argv: Sequence[str], options: Mapping[str, str]) -> list[str]:
    """`argv` without any of `options` (`--opt V` or `--opt=V`), then each `--opt value`."""
    kept: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in options:
            skip = True
        elif word.split("=", 1)[0] not in options:
            kept.append(word)
    for option, value in options.items():
        kept += [option, value]
    return kept


def again(
    options: Mapping[str, str],
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The user's command line (`sys.argv[1:]`: `up ...`, `cluster up ...`) with `options` set."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    words = replaced(argv, options)
    if env.get(RUN_BY) == "make" and words[:1] == ["up"]:
        rest = shlex.join(words[1:])
        return f"make run ARGS={shlex.quote(rest)}" if rest else "make run"
    return shlex.join([cli_command(), *words])

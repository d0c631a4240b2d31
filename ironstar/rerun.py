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


def cli_command(argv0: str | None = None) -> str:
    """What to type for `ironstar` in this shell: as the user ran it (`sys.argv[0]`, e.g.
    `.venv/bin/ironstar`), the bare name when PATH finds that one; else (`python -m
    ironstar`) the script beside this interpreter, by name or by path the same way."""
    run = sys.argv[0] if argv0 is None else argv0
    named = Path(run).name == "ironstar"
    here = Path(run) if named else Path(sys.executable).parent / "ironstar"
    found = shutil.which("ironstar")
    if named and not Path(run).is_absolute():
        return run  # typed as a path (`.venv/bin/ironstar`) or found on PATH as `ironstar`
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
    return typed(replaced(argv, options), env)


def typed(words: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """What to type for `ironstar WORDS` in the form the user ran this command: `make run
    ARGS='...'` for `up` under `make run`, else `cli_command()` and the words, quoted."""
    env = os.environ if env is None else env
    words = list(words)
    if env.get(RUN_BY) == "make" and words[:1] == ["up"]:
        rest = shlex.join(words[1:])
        return f"make run ARGS={shlex.quote(rest)}" if rest else "make run"
    return shlex.join([cli_command(), *words])

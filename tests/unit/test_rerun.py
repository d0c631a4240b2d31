"""A refusal's hint is the user's own command with only the options it must change (pure)."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st

from ironstar.rerun import again, cli_command, replaced, typed

WORDS = st.sampled_from([".ironstar-2", "--demo", "5", "--detach", "--nats", "1", "--url=x"])
CHANGED = st.sampled_from(["--http-port", "--data-dir"])


@given(st.lists(WORDS, max_size=8), CHANGED, st.integers(1, 65535))
def test_the_changed_option_appears_once_with_its_value_and_the_rest_is_kept(
    argv: list[str], option: str, port: int
) -> None:
    given_argv = [*argv, option, "8000", *argv, f"{option}=8001"]
    words = replaced(given_argv, {option: str(port)})
    assert words.count(option) == 1 and words[-2:] == [option, str(port)]
    assert words[:-2] == [*argv, *argv]


def test_make_run_is_repeated_as_make_run_and_anything_else_as_ironstar() -> None:
    argv = ["up", "--data-dir", ".ironstar-2", "--http-port=8000"]
    by_make = again({"--http-port": "8001"}, argv, {"IRONSTAR_RUN_BY": "make"})
    assert by_make == "make run ARGS='--data-dir .ironstar-2 --http-port 8001'"
    cluster = again({"--http-port": "9002"}, ["cluster", "up", "--detach"], {})
    assert shlex.split(cluster)[1:] == ["cluster", "up", "--detach", "--http-port", "9002"]
    # `make` in the environment means nothing to a cluster: it is not what `make run` runs
    also = again({"--http-port": "9002"}, ["cluster", "up"], {"IRONSTAR_RUN_BY": "make"})
    assert "make run" not in also


def test_a_hint_names_ironstar_as_the_user_ran_it() -> None:
    assert cli_command(".venv/bin/ironstar") == ".venv/bin/ironstar"
    assert cli_command("ironstar") == "ironstar"
    assert cli_command("/nowhere/on/path/bin/ironstar") == "/nowhere/on/path/bin/ironstar"
    typed_in = again({}, ["status"], {}).split()[0]  # under pytest: `python -m`, the venv's
    assert typed_in.endswith("ironstar"), typed_in


def test_every_hint_in_one_form_and_make_run_only_for_up_under_make() -> None:
    make = {"IRONSTAR_RUN_BY": "make"}
    by_make = shlex.split(typed(["up", "--data-dir", "d 2"], make))
    assert by_make == ["make", "run", "ARGS=--data-dir 'd 2'"]
    assert typed(["up"], make) == "make run"
    status = typed(["status", "--url", "http://127.0.0.1:1"], make)
    assert shlex.split(status)[1:] == ["status", "--url", "http://127.0.0.1:1"]
    assert shlex.split(status)[0] == cli_command()

"""A refusal's hint is the user's own command with only the options it must change (pure)."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st

from ironstar.rerun import again, replaced

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

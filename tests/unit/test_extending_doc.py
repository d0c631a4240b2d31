"""docs/extending.md shows only what runs: its Python blocks are excerpts of the app
`ironstar new billing` writes, its shell steps are those tests/e2e/test_new_app.py runs,
and the size it states is the scaffold's."""

from __future__ import annotations

import re
from pathlib import Path

from ironstar.scaffold import write_app
from tests.e2e.test_new_app import STEPS

DOC = Path(__file__).parents[2] / "docs" / "extending.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(DOC.read_text()) if lang == language]


def test_every_python_block_is_an_excerpt_of_the_scaffolded_app(tmp_path: Path) -> None:
    written = write_app(tmp_path, "billing")
    sources = [path.read_text() for path in written]
    blocks = _blocks("python")
    assert len(blocks) >= 5
    for block in blocks:
        assert any(block in source for source in sources), block[:200]


def test_every_shell_step_is_one_the_end_to_end_test_runs_in_that_order() -> None:
    lines = [line for block in _blocks("sh") for line in block.splitlines() if line.strip()]
    assert lines == list(STEPS)


def test_the_stated_size_is_the_scaffolds(tmp_path: Path) -> None:
    written = write_app(tmp_path, "billing")
    lines = sum(len(path.read_text().splitlines()) for path in written)
    assert f"**{len(written)} files, {lines} lines**" in DOC.read_text()

"""The code stays easy to carry on (issue 18's figures, kept): public names documented, no
long functions, no module past the team's 400 lines. Complexity (ruff C901, at most 20) is
checked by `make lint`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "writer", "projector", "gateway", "ironstar")
MAX_FUNCTION_LINES = 60
MIN_DOCUMENTED = 0.80
MAX_MODULE_LINES = 400  # docs/architecture.md, "Layout": split by concern before this


def _definitions() -> Iterator[tuple[str, ast.AST, bool]]:
    """Every function and class of the service packages: (where, node, is public), where a
    public name is not underscored, not nested in a function and not inside a private class."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "templates" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            yield from _walk(tree, str(path.relative_to(ROOT)), public=True, in_function=False)


def _walk(
    node: ast.AST, where: str, *, public: bool, in_function: bool
) -> Iterator[tuple[str, ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            is_public = public and not in_function and not child.name.startswith("_")
            yield f"{where}:{child.lineno} {child.name}", child, is_public
            yield from _walk(
                child,
                where,
                public=is_public,
                in_function=in_function or not isinstance(child, ast.ClassDef),
            )


def test_no_module_is_longer_than_four_hundred_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)} ({lines} lines)"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert long == [], "split by concern: " + ", ".join(long)


def test_no_function_is_longer_than_sixty_lines() -> None:
    long = [
        f"{where} ({(node.end_lineno or node.lineno) - node.lineno + 1} lines)"
        for where, node, _ in _definitions()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == [], "split into named steps: " + ", ".join(long)


def test_most_public_names_say_what_they_are() -> None:
    public = [(where, node) for where, node, is_public in _definitions() if is_public]
    missing = [where for where, node in public if not ast.get_docstring(node)]  # type: ignore[arg-type]
    documented = 1 - len(missing) / len(public)
    assert documented >= MIN_DOCUMENTED, (
        f"{documented:.0%} of {len(public)} public names have a docstring; undocumented: "
        + ", ".join(missing)
    )

"""`ironstar new NAME`: names that could never load are refused with their true reason.
(That the next steps it prints work as printed, also with `--dir`: tests/e2e/test_new_app.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from ironstar.cli import main


def _new(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["new", *args])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("json", "an importable module's name"),  # the standard library
        ("test", "an importable module's name"),
        ("msgspec", "an importable module's name"),  # an installed package
        ("duckdb", "an importable module's name"),
        ("common", "Ironstar's own module's name"),
        ("ironstar", "Ironstar's own module's name"),
        ("tests", "Ironstar's own module's name"),
        ("Billing", "must start with a lowercase letter"),
        ("_priv", "must start with a lowercase letter"),  # an identifier, not a subject token
        ("b" * 58, "58 characters long; at most 57"),
        ("bill-ing", "is not a Python identifier"),
        ("class", "is not a Python identifier"),
        ("", "is not a Python identifier"),
    ],
)
def test_a_name_that_could_never_load_is_refused_with_its_reason(
    name: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, said = _new(capsys, name, "--dir", str(tmp_path))
    assert code == 2
    assert reason in said and said.count("\n") == 1, said
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_longest_name_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, said = _new(capsys, "b" * 57, "--dir", str(tmp_path))
    assert code == 0, said


def test_loading_a_module_that_is_no_app_names_the_file_it_imported() -> None:
    from common import catalogue

    with pytest.raises(catalogue.AppError, match=r"json/__init__\.py has no `app = App"):
        catalogue.load("json")

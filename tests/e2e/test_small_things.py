"""Small things a new user notices: what make, token and demo say and send."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from examples.todo.demo import LISTS, script
from tests.support.processes import run_cli
from tests.support.stack import Stack
from tests.support.up import ROOT

pytestmark = pytest.mark.e2e


def test_make_names_the_python_version_it_found_when_it_is_too_old(tmp_path: Path) -> None:
    old = tmp_path / "python3.9"
    old.write_text(
        "#!/bin/sh\n# a Python 3.9.7 for this test: the real one, reporting an old version\n"
        'exec python3 -c "import sys; sys.version_info = (3, 9, 7); exec(sys.argv[1])" "$2"\n'
    )
    old.chmod(0o755)
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "--no-print-directory", "run", f"PYTHON={old}", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"Ironstar needs Python 3.11 or newer, but {old} is Python 3.9.7" in done.stderr
    assert "make run PYTHON=python3.12" in done.stderr
    assert not venv.exists()


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({"IRONSTAR_AUTH_SECRET": ""}, ("token", "--scope", "admin")),
        ({"IRONSTAR_AUTH_SECRET": "too-short"}, ("token", "--scope", "admin")),
        ({"IRONSTAR_AUTH_SECRET": "too-short"}, ("gateway",)),
    ],
    ids=["token-without-secret", "token-short-secret", "gateway-short-secret"],
)
def test_every_auth_secret_error_suggests_the_same_one_way_to_make_one(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    done = run_cli({"IRONSTAR_NATS_URL": "nats://127.0.0.1:1", **env}, *args)
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert "make one with `ironstar token --new-secret`" in said, said
    assert "secrets.token_urlsafe" not in said
    made = run_cli({}, "token", "--new-secret").stdout.strip()
    assert len(made.encode()) >= 32


def test_demo_traffic_looks_like_people_using_todo_lists() -> None:
    commands = [c for _, c in zip(range(3000), script(random.Random(7)), strict=False)]
    live: dict[str, dict[str, tuple[str, bool]]] = {name: {} for name in LISTS}
    names: list[str] = []
    for aggregate, ident, kind, payload in commands:
        items = live.get(ident, {})
        if kind == "add_todo":
            texts = {text.split(" (")[0] for text, _ in items.values()}
            assert payload["text"] not in texts, f"{ident} got {payload['text']!r} twice"
            items[payload["todo_id"]] = (payload["text"], False)
        elif kind in ("complete_todo", "reopen_todo"):
            items[payload["todo_id"]] = (items[payload["todo_id"]][0], kind == "complete_todo")
        elif kind == "rename_todo":
            items[payload["todo_id"]] = (payload["text"], items[payload["todo_id"]][1])
        elif kind == "delete_todo":
            del items[payload["todo_id"]]
        elif kind == "clear_completed":
            live[ident] = {k: v for k, v in items.items() if not v[1]}
        elif aggregate == "user_profile" and "name" in payload:
            names.append(payload["name"])
    assert all(not re.search(r"\d", name) for name in names), names
    registered = [c for c in commands if c[2] == "register_user"]
    assert len(registered) > 3, "nobody new joins while the demo runs"
    assert len({c[1] for c in registered}) == len(registered)


def test_demo_run_again_on_the_same_stack_goes_on_from_what_is_there(stack: Stack) -> None:
    for _ in range(2):
        done = run_cli(stack.env, "demo", "--url", stack.url, "--rate", "60", "--duration", "2")
        assert done.returncode == 0 and "commands accepted" in done.stdout, done.stdout
    for list_id in LISTS:
        items = httpx.get(f"{stack.url}/api/todo-lists/{list_id}", timeout=10).json()
        texts = [i["text"].split(" (")[0] for i in items["result"]["items"]]
        assert len(texts) == len(set(texts)), f"{list_id} repeats itself: {texts}"
    seeded = script(random.Random(1), {"groceries": {"t1": ("Milk", False)}}, ["ada", "grace"])
    first = [c for _, c in zip(range(500), seeded, strict=False)]
    assert [c[1] for c in first if c[2] == "register_user"][:1] == ["alan"]
    assert not any(c[2] == "add_todo" and c[3]["todo_id"] == "t1" for c in first)

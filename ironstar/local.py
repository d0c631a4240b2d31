"""Which stack a CLI command talks to, and the files a running stack leaves for it to find.

`ironstar up` writes `<data dir>/up.json` while it runs: the NATS URL, the gateway URL and
the operator's NATS credentials (mode 0600). `ironstar cluster up` writes
`<data dir>/cluster.json` (each member's kind, URL and pid). Both hold the data dir's lock
(ironstar/datadir.py) for as long as they run, so a file whose lock nobody holds is stale.

Precedence, most explicit first: a `--data-dir` flag; `IRONSTAR_NATS_URL` in the
environment (given the operator's credentials from `./.ironstar/up.json` when that stack
listens at the same URL and no `IRONSTAR_NATS_USER` is set); the stack in `./.ironstar`,
then `./.ironstar-cluster`. Every command says on stderr which stack it talks to.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import Unavailable
from common.settings import GatewaySettings, NatsSettings
from ironstar import datadir

DEFAULT_DATA_DIR = Path(".ironstar")
DEFAULT_CLUSTER_DIR = Path(".ironstar-cluster")
UP_FILE = "up.json"
CLUSTER_FILE = "cluster.json"
START_HINT = (
    "start one with `make run` (or `.venv/bin/ironstar up`), or point at a running one "
    "with --data-dir DIR or IRONSTAR_NATS_URL"
)


def write(data_dir: Path, nats_url: str, http_url: str, user: str, password: str) -> Path:
    address = data_dir / UP_FILE
    fd = os.open(address, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(
            {
                "nats_url": nats_url,
                "http_url": http_url,
                "nats_user": user,
                "nats_password": password,
                "pid": os.getpid(),
            },
            out,
        )
    return address


def forget(data_dir: Path) -> None:
    """The stack stopped: remove what told the CLI where it was."""
    (data_dir / UP_FILE).unlink(missing_ok=True)


def projector_dir(data_dir: Path) -> Path:
    """Where the projector replicas of the stack in `data_dir` keep their DuckDB files."""
    cluster = data_dir / "projectors"
    return cluster if cluster.is_dir() else data_dir / "projector"


def read(data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, Any] | None:
    """`up.json` of a stack that runs (its lock is held); None otherwise."""
    try:
        found: dict[str, Any] = json.loads((data_dir / UP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found if datadir.holder(data_dir) is not None else None


@dataclass(frozen=True)
class Target:
    """A stack to talk to: its NATS settings, its gateway URL, and how it was found."""

    nats: NatsSettings
    http_url: str
    source: str
    projector_dir: Path | None = None  # where its replicas' DuckDB files are, when known
    data_dir: Path | None = None  # its data dir, when it runs on this machine

    def say(self) -> None:
        print(f"ironstar: using {self.source}", file=sys.stderr)


def _from_up(data_dir: Path, found: dict[str, Any], env: Mapping[str, str]) -> Target:
    return Target(
        NatsSettings.from_env(
            env, url=found["nats_url"], user=found["nats_user"], password=found["nats_password"]
        ),
        found["http_url"],
        f"`ironstar up` in {data_dir} (pid {found.get('pid')}): {found['nats_url']}, "
        f"{found['http_url']}",
        projector_dir(data_dir),
        data_dir,
    )


def _from_cluster(data_dir: Path, env: Mapping[str, str]) -> Target | None:
    try:
        members: dict[str, dict[str, Any]] = json.loads((data_dir / CLUSTER_FILE).read_text())
    except (OSError, ValueError):
        return None
    if datadir.holder(data_dir) is None:
        return None
    nats = ",".join(m["url"] for m in members.values() if m["kind"] == "nats")
    gateways = [m["url"].rstrip("/") for m in members.values() if m["kind"] == "gateway"]
    http = gateways[0] if gateways else "http://127.0.0.1:8000"
    return Target(
        NatsSettings.from_env(env, url=nats, replicas=min(3, nats.count(",") + 1)),
        http,
        f"`ironstar cluster` in {data_dir}: {nats}, {http}",
        projector_dir(data_dir),
        data_dir,
    )


def in_dir(data_dir: Path, env: Mapping[str, str] | None = None) -> Target | None:
    """The stack running with `data_dir` (`ironstar up` or `ironstar cluster up`), if any."""
    env = os.environ if env is None else env
    found = read(data_dir)
    if found is not None:
        return _from_up(data_dir, found, env)
    return _from_cluster(data_dir, env)


def target(data_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Target:
    """The stack a command is asked about (see the module's precedence); Unavailable if none."""
    env = os.environ if env is None else env
    if data_dir is not None:
        found = in_dir(data_dir, env)
        if found is None:
            raise Unavailable(f"no Ironstar stack runs with data dir {data_dir}; {START_HINT}")
        return found
    if env.get("IRONSTAR_NATS_URL"):
        nats = NatsSettings.from_env(env)
        local = read(DEFAULT_DATA_DIR)
        if local is not None and local["nats_url"] == nats.url and not nats.user:
            nats = NatsSettings.from_env(
                env, user=local["nats_user"], password=local["nats_password"]
            )
        same = local is not None and local["nats_url"] == nats.url
        gateway = GatewaySettings.from_env(env)
        http = local["http_url"] if same and local else f"http://{gateway.host}:{gateway.port}"
        return Target(nats, http, f"IRONSTAR_NATS_URL={nats.url}")
    for where in (DEFAULT_DATA_DIR, DEFAULT_CLUSTER_DIR):
        found = in_dir(where, env)
        if found is not None:
            return found
    raise Unavailable(
        f"no Ironstar stack runs here (none in ./{DEFAULT_DATA_DIR} or ./{DEFAULT_CLUSTER_DIR}, "
        f"and IRONSTAR_NATS_URL is not set); {START_HINT}"
    )

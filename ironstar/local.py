"""Which stack a CLI command talks to, and the files a running stack leaves for it to find.

`ironstar up` writes `<data dir>/up.json` while it runs: the NATS URL, the gateway URL and
the operator's NATS credentials (mode 0600). `ironstar cluster up` writes
`<data dir>/cluster.json` (each member's kind, URL and pid). Both also write
`<data dir>/app.json`: the app the stack runs (its module, the directory it was imported
from, its first aggregate), so `ironstar status` probes that app's writer and `ironstar
demo` sends that app's traffic, whatever the CLI's own directory or IRONSTAR_APP. Both hold
the data dir's lock (ironstar/datadir.py) for as long as they run, so a file whose lock
nobody holds is stale.

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
from urllib.parse import urlsplit

from common import catalogue
from common.errors import Unavailable
from common.settings import GatewaySettings, NatsSettings
from ironstar import datadir
from ironstar.rerun import typed

DEFAULT_DATA_DIR = Path(".ironstar")
DEFAULT_CLUSTER_DIR = Path(".ironstar-cluster")
UP_FILE = "up.json"
CLUSTER_FILE = "cluster.json"
APP_FILE = "app.json"


def write(data_dir: Path, nats_url: str, http_url: str, user: str, password: str) -> Path:
    """Write `<data dir>/up.json` (mode 0600: it holds the CLI's NATS password): where the stack's
    NATS and gateway listen and the user the CLI connects as. Returns its path."""
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


def record_app(data_dir: Path, name: str) -> None:
    """Write `app.json`: {"name": module, "path": the sys.path entry it was imported from,
    "aggregate": its first aggregate} (only the name when it cannot be imported here)."""
    found: dict[str, Any] = {"name": name}
    try:
        app = catalogue.load(name).app
        module = sys.modules[name]
    except (catalogue.AppError, KeyError):
        pass
    else:
        file = Path(module.__file__ or ".").resolve()  # .../apps/billing/__init__.py
        levels = name.count(".") + (file.name == "__init__.py")
        found |= {"path": str(file.parents[levels]), "aggregate": app.aggregates[0].name}
    (data_dir / APP_FILE).write_text(json.dumps(found))


def running_app(data_dir: Path) -> dict[str, Any] | None:
    """What `record_app` wrote for the stack in `data_dir` (`{"name", ["path"],
    ["aggregate"]}`); None when unknown."""
    try:
        found: dict[str, Any] = json.loads((data_dir / APP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("name"), str) else None


def forget(data_dir: Path) -> None:
    """The stack stopped: remove what told the CLI where it was."""
    (data_dir / UP_FILE).unlink(missing_ok=True)


def projector_dir(data_dir: Path) -> Path:
    """Where the projector replicas of the stack in `data_dir` keep their DuckDB files."""
    cluster = data_dir / "projectors"
    return cluster if cluster.is_dir() else data_dir / "projector"


def read(data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, Any] | None:
    """`up.json` of a stack that runs (its lock is held): `{"nats_url", "http_url",
    "nats_user", "nats_password", "pid"}`; None otherwise."""
    try:
        found: dict[str, Any] = json.loads((data_dir / UP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found if datadir.holder(data_dir) is not None else None


@dataclass(frozen=True)
class Target:
    """A stack to talk to: its NATS settings, its gateway URL (None when unknown), and how it
    was found."""

    nats: NatsSettings
    http_url: str | None
    source: str
    projector_dir: Path | None = None  # where its replicas' DuckDB files are, when known
    data_dir: Path | None = None  # its data dir, when it runs on this machine
    members: dict[str, dict[str, Any]] | None = None  # a cluster's record (cluster.json)
    app: dict[str, Any] | None = None  # the app it runs (app.json), when known

    def load_app(self) -> catalogue.Catalogue:
        """Install the app this stack runs (from the directory it was imported from), else
        this process's (IRONSTAR_APP); AppError when it cannot be loaded here."""
        if self.app is None:
            return catalogue.current()
        path = self.app.get("path")
        if path and path not in sys.path:
            sys.path.insert(0, path)
        return catalogue.install(catalogue.load(self.app["name"]))

    def probe_aggregate(self) -> str:
        """An aggregate type the stack's writers serve (for a probe that appends nothing)."""
        if self.app is not None and self.app.get("aggregate"):
            return str(self.app["aggregate"])
        return next(iter(self.load_app().aggregates))

    def say(self) -> None:
        """Tell stderr which stack the command uses and where its NATS and gateway are."""
        http = self.http_url or "unknown (give --url)"
        print(f"ironstar: using {self.source}: NATS {self.nats.url}, HTTP {http}", file=sys.stderr)

    def gateway(self) -> str:
        """The gateway's base URL; Unavailable (asking for --url) when it is not known."""
        if self.http_url is None:
            raise Unavailable(
                f"which gateway serves NATS at {self.nats.url} is not known (no running stack "
                "in ./.ironstar* listens there): give its base URL with --url "
                "http://HOST:PORT, or set IRONSTAR_GATEWAY_HOST / IRONSTAR_GATEWAY_PORT"
            )
        return self.http_url


def _from_up(data_dir: Path, found: dict[str, Any], env: Mapping[str, str]) -> Target:
    return Target(
        NatsSettings.from_env(
            env, url=found["nats_url"], user=found["nats_user"], password=found["nats_password"]
        ),
        found["http_url"],
        f"`ironstar up` in {data_dir} (pid {found.get('pid')})",
        projector_dir(data_dir),
        data_dir,
        app=running_app(data_dir),
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
        f"`ironstar cluster` in {data_dir}",
        projector_dir(data_dir),
        data_dir,
        members,
        running_app(data_dir),
    )


def in_dir(data_dir: Path, env: Mapping[str, str] | None = None) -> Target | None:
    """The stack running with `data_dir` (`ironstar up` or `ironstar cluster up`), if any."""
    env = os.environ if env is None else env
    found = read(data_dir)
    if found is not None:
        return _from_up(data_dir, found, env)
    return _from_cluster(data_dir, env)


LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def same_servers(url: str) -> set[str]:
    """The servers of a NATS URL (comma separated) as comparable `host:port` strings.

    Names of this machine's loopback (localhost, 127.0.0.1, ::1 / [::1]) compare equal, a
    missing port is 4222 and a missing scheme nats://; e.g. `nats://localhost:4222/` and
    `127.0.0.1:4222` give the same set.
    """
    found = set()
    for server in (u.strip() for u in url.split(",")):
        if not server:
            continue
        where = urlsplit(server if "://" in server else f"nats://{server}")
        try:
            port = where.port or 4222
        except ValueError:
            found.add(server.rstrip("/"))
            continue
        host = (where.hostname or "").lower()
        found.add(f"{'loopback' if host in LOOPBACK else host}:{port}")
    return found


def _stack_at(nats_url: str, env: Mapping[str, str]) -> Target | None:
    """The stack running in a ./.ironstar* data dir whose NATS listens at `nats_url`."""
    wanted = same_servers(nats_url)
    for where in sorted(Path(".").glob(".ironstar*")):
        found = in_dir(where, env) if where.is_dir() else None
        if found is not None and wanted <= same_servers(found.nats.url):
            return found
    return None


def _gateway_from(env: Mapping[str, str]) -> str | None:
    """The gateway the IRONSTAR_GATEWAY_* settings name, when any is set."""
    if not {"IRONSTAR_GATEWAY_HOST", "IRONSTAR_GATEWAY_PORT"} & env.keys():
        return None
    gateway = GatewaySettings.from_env(env)
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(gateway.host, gateway.host)
    return f"http://{host}:{gateway.port}"


def _from_nats_url(env: Mapping[str, str], url: str | None) -> Target:
    nats = NatsSettings.from_env(env)
    stack = _stack_at(nats.url, env)
    if stack is None:
        http, how = url or _gateway_from(env), "--url" if url else "IRONSTAR_GATEWAY_*"
        said = f" (gateway from {how})" if http else ""
        return Target(nats, http, f"IRONSTAR_NATS_URL={nats.url}{said}")
    if not nats.user:  # the operator's credentials of the stack that listens there
        nats = NatsSettings.from_env(env, user=stack.nats.user, password=stack.nats.password)
    return Target(
        nats,
        url or stack.http_url,
        f"IRONSTAR_NATS_URL={nats.url} ({stack.source}" + (", gateway from --url)" if url else ")"),
        stack.projector_dir,
        stack.data_dir,
        stack.members,
        stack.app,
    )


def target(
    data_dir: Path | None = None, env: Mapping[str, str] | None = None, url: str | None = None
) -> Target:
    """The stack a command is asked about (see the module's precedence); Unavailable if none.

    `url` (a command's --url) is the gateway's base URL, whatever stack is found.
    """
    env = os.environ if env is None else env
    if data_dir is not None:
        found = in_dir(data_dir, env)
        if found is None:
            raise Unavailable(
                f"no Ironstar stack runs with data dir {data_dir}; {start_hint(data_dir)}"
            )
    elif env.get("IRONSTAR_NATS_URL"):
        return _from_nats_url(env, url)
    else:
        found = next(
            (t for d in (DEFAULT_DATA_DIR, DEFAULT_CLUSTER_DIR) if (t := in_dir(d, env))), None
        )
    if found is None:
        stopped = [d for d in (DEFAULT_DATA_DIR, DEFAULT_CLUSTER_DIR) if d.is_dir()]
        where = (
            f"none running in ./{' or ./'.join(map(str, stopped))}"
            if stopped
            else f"none in ./{DEFAULT_DATA_DIR} or ./{DEFAULT_CLUSTER_DIR}"
        )
        raise Unavailable(
            f"no Ironstar stack runs here ({where}, and IRONSTAR_NATS_URL is not set); "
            f"{start_hint()}"
        )
    if url:
        return Target(
            found.nats,
            url,
            f"{found.source}, gateway from --url",
            found.projector_dir,
            found.data_dir,
            found.members,
            found.app,
        )
    return found


def start_hint(data_dir: Path | None = None) -> str:
    """How to start the stack asked about: `ironstar cluster up` for a cluster's data dir;
    each command in the form the user ran this one (ironstar/rerun.py)."""
    cluster = data_dir is not None and (
        (data_dir / CLUSTER_FILE).exists()
        or (data_dir / "projectors").is_dir()
        or data_dir.resolve() == DEFAULT_CLUSTER_DIR.resolve()
    )
    if cluster:
        where = [] if data_dir == DEFAULT_CLUSTER_DIR else ["--data-dir", str(data_dir)]
        return (
            f"start it with `{typed(['cluster', 'up', *where])}` (add --detach to keep it "
            "running), "
            "or point at a running stack with --data-dir DIR or IRONSTAR_NATS_URL"
        )
    if data_dir is not None and data_dir.resolve() != DEFAULT_DATA_DIR.resolve():
        return (
            f"start it with `make run ARGS='--data-dir {data_dir}'` (or "
            f"`{typed(['up', '--data-dir', str(data_dir)], {})}`), or point at a running stack "
            "with --data-dir DIR or IRONSTAR_NATS_URL"
        )
    return (
        f"start one with `make run` (or `{typed(['up'], {})}`), or point at a running one "
        "with --data-dir DIR or IRONSTAR_NATS_URL"
    )

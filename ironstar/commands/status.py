"""`ironstar status`: is everything up, how big is the stream, how far behind is each reader.

It asks NATS (stream and consumer info; a probe request to the writers' and projectors'
queue groups, which answer without appending) and the gateway over HTTP (`/healthz`,
`/readyz`). It finds the stack as every CLI command does (ironstar/local.py): `--data-dir`
of a running `ironstar up` or `ironstar cluster up`, else `IRONSTAR_NATS_URL`, else the
stack in ./.ironstar or ./.ironstar-cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import msgspec
from nats.js.api import ConsumerInfo, StreamState

from common import builtin, bus, catalogue, storage
from common.errors import IronstarError, Unavailable
from common.messages import CommandRequest, QueryRequest
from common.settings import NatsSettings
from common.subjects import Subjects
from ironstar import detached
from ironstar.commands import examples
from ironstar.commands.remote import add_data_dir, target
from ironstar.local import Target

PROBE_ID = "ironstar-status"
_encode = msgspec.json.Encoder().encode


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    status = commands.add_parser(
        "status",
        help="health of each service, stream size, consumers, projection lag",
        description="Ask NATS and the gateway how the system is.  Exit status 1 when "
        "something is down.",
        **examples(
            "ironstar status",
            "ironstar status --json",
            "ironstar status --data-dir .ironstar-cluster",
            "IRONSTAR_NATS_URL=nats://10.0.0.5:4222 ironstar status --url http://10.0.0.5:8000",
        ),
    )
    add_data_dir(status)
    status.add_argument("--url", default=None, help="gateway base URL (default: the stack's)")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(run=run)


def _http(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return {**json.loads(reply.read()), "http": reply.status}
    except urllib.error.HTTPError as exc:
        return {**json.loads(exc.read() or b"{}"), "http": exc.code}
    except (urllib.error.URLError, OSError) as exc:
        return {"http": 0, "reason": str(getattr(exc, "reason", exc))}


async def _probe(nc: Any, subject: str, body: bytes, what: str) -> dict[str, Any]:
    """Up when anything answers (an error reply too); down on no responders or timeout."""
    started = time.perf_counter()
    try:
        reply = json.loads(await bus.request(nc, subject, body, 2.0, what))
    except Unavailable as exc:
        return {"up": False, "reason": exc.message}
    except IronstarError:
        reply = {}
    return {"up": True, "ms": round((time.perf_counter() - started) * 1000, 1), **reply}


async def _probe_writer(
    nc: Any, subjects: Subjects, aggregate: str | catalogue.AppError
) -> dict[str, Any]:
    """A command of a type no aggregate has: any reply proves a writer (nothing appended)."""
    if isinstance(aggregate, catalogue.AppError):
        return {"up": False, "reason": f"cannot probe it: {aggregate}"}
    probe = CommandRequest(
        aggregate_id=PROBE_ID,
        type="status_probe",
        payload={},
        command_id=PROBE_ID,
        correlation_id=PROBE_ID,
    )
    return await _probe(nc, subjects.command(aggregate), _encode(probe), "writer")


def _refused(url: str) -> str | None:
    """Why no server of `url` (comma separated) accepts a TCP connection; None when one does."""
    reasons, servers = [], url.split(",")
    for server in servers:
        where = urllib.parse.urlsplit(server.strip())
        try:
            socket.create_connection((where.hostname or "", where.port or 4222), timeout=2).close()
            return None
        except OSError as exc:
            why = str(exc.strerror or exc)
            reasons.append(f"{server.strip()}: {why}" if len(servers) > 1 else why)
    return "; ".join(reasons)


async def gather(nats: NatsSettings, aggregate: str | catalogue.AppError) -> dict[str, Any]:
    """The state of the stack at `nats`; its writers are probed on `aggregate`'s subject
    (down, saying why, when which aggregate the stack serves could not be known).

    Shape: `{"nats": {"url", "up": True}, "stream": {"name", "events", "bytes",
    "first_sequence", "last_sequence", "consumers"}, "writer": {"up", "ms" | "reason"},
    "projector": {"up", "at", "lag" (events), ["storage_exhausted"], ["reason"], "replicas":
    [{"name", "up", "at", "lag", ["reason"]}]} (the first answer is any replica's, then each
    replica that has a consumer, asked on its own subject),
    "consumers": [{"name", "kind": "sse" | "projector", "pending", "ack_pending",
    "delivered"}]}`; `ms` is the probe's round trip in milliseconds. Raises Unavailable
    when NATS cannot be reached, saying why (a refused TCP connection named as such)."""
    refused = _refused(nats.url)  # nats-py would retry a refused connect until the timeout
    if refused:
        raise Unavailable(f"cannot reach NATS at {nats.url}: {refused}")
    nc = await bus.connect(nats, "ironstar-status", wait_s=4, reconnect=False, quiet=True)
    try:
        js = nc.jetstream()
        info = await js.stream_info(nats.stream)
        consumers = await js.consumers_info(nats.stream)
        subjects = Subjects(nats.prefix)
        writer = await _probe_writer(nc, subjects, aggregate)
        projector = await _probe(
            nc,
            subjects.query(builtin.NAME),  # every app has the built-in projection
            _encode(QueryRequest(name="totals", params={}, min_seq=0, timeout_s=1.0)),
            "projector",
        )
        asked = _encode(QueryRequest(name="status", timeout_s=1.0))
        names = _replicas(consumers)
        probes = await asyncio.gather(  # at once: each one down waits its 2 s
            *(_probe(nc, subjects.query(f"rebuild.{n}"), asked, f"projector {n}") for n in names)
        )
        replicas = dict(zip(names, probes, strict=True))
    finally:
        await nc.close()
    last = info.state.last_seq
    each = [{"name": n, **_projector(p, last)} for n, p in replicas.items()]
    return {
        "nats": {"url": nats.url, "up": True},
        "stream": _stream(nats.stream, info.state),
        "writer": {k: v for k, v in writer.items() if k in ("up", "ms", "reason")},
        "projector": {**_furthest(_projector(projector, last), each, last), "replicas": each},
        "consumers": [_reader(c) for c in consumers],
    }


def _furthest(probe: dict[str, Any], replicas: list[dict[str, Any]], last: int) -> dict[str, Any]:
    """The projector line: the furthest replica that answered on its own subject (not
    whichever answered the queue group's probe, which changes from run to run), else the
    probe's answer."""
    answered = [r["at"] for r in replicas if r["up"] and r["at"] is not None]
    if not answered:
        return probe
    at = max(answered)
    found = {**probe, "up": True, "at": at, "lag": last - at}
    found.pop("reason", None)
    return found


def _replicas(consumers: list[ConsumerInfo]) -> list[str]:
    """The projector replicas that have a consumer (`projector-<name>`; not a catch-up's
    `-bulk` nor a rebuild's own), by name."""
    durable = "projector-"
    return sorted(
        c.name.removeprefix(durable)
        for c in consumers
        if c.name.startswith(durable) and not c.name.endswith(("-bulk", "-rebuild"))
    )


def _stream(name: str, state: StreamState) -> dict[str, Any]:
    return {
        "name": name,
        "events": state.messages,
        "bytes": state.bytes,
        "first_sequence": state.first_seq,
        "last_sequence": state.last_seq,
        "consumers": state.consumer_count,
    }


def _projector(probe: dict[str, Any], last_sequence: int) -> dict[str, Any]:
    """The projector's probe answer as the status reports it: its position and lag."""
    at = probe.get("sequence")
    return {
        "up": probe["up"],
        "at": at,
        "lag": None if at is None else last_sequence - at,
        **{k: probe[k] for k in ("storage_exhausted", "halted") if k in probe},
        **({"reason": probe["reason"]} if "reason" in probe else {}),
    }


def _reader(consumer: ConsumerInfo) -> dict[str, Any]:
    return {
        "name": consumer.name,
        "kind": "sse" if consumer.name.startswith("sse_") else "projector",
        "pending": consumer.num_pending or 0,
        "ack_pending": consumer.num_ack_pending or 0,
        "delivered": consumer.delivered.stream_seq if consumer.delivered else 0,
    }


_MARK = {True: "up  ", False: "DOWN"}


def report(state: dict[str, Any]) -> list[str]:
    """The human-readable lines of a status."""
    mark = _MARK
    stream, gateway = state.get("stream"), state["gateway"]
    lines = [f"nats-server  {mark[state['nats']['up']]}  {state['nats']['url']}"]
    if not state["nats"]["up"]:
        lines[-1] += f"  ({state['nats']['reason']})"
    if stream:
        lines.append(
            f"  stream     {stream['name']}: {stream['events']:,} events, "
            f"{storage.size(stream['bytes'])}, "
            f"sequences {stream['first_sequence']}..{stream['last_sequence']}, "
            f"{stream['consumers']} consumers"
        )
    if "writer" in state:
        lines.extend(_service_lines(state["writer"], state["projector"]))
    ready = gateway.get("http") == 200
    detail = gateway.get("reason") or gateway.get("http")
    state_mark = "FULL" if gateway.get("status") == "storage_exhausted" else mark[ready]
    lines.append(
        f"gateway      {state_mark}  {gateway['url']}/" + ("" if ready else f"  ({detail})")
    )
    disk = state.get("storage")
    if disk:
        lines.append(
            f"disk         {'FULL' if disk['full'] else 'ok  '}  "
            f"{storage.size(disk['free_bytes'])} free in {disk['path']}"
            + ("; commands are refused until space is freed, reads go on" if disk["full"] else "")
        )
    for m in state.get("members", ()):
        lines.append(
            f"  {m['name']:<13}{mark[m['up']]}  {m['url']}  pid {m['pid']}"
            + ("" if m["up"] else f"  ({m['reason']})")
        )
    return lines + _consumer_lines(state.get("consumers") or [])


def _service_lines(w: dict[str, Any], p: dict[str, Any]) -> list[str]:
    """The writer's and the projector's lines (`gather`'s "writer" and "projector"), one
    more per replica when there are several."""
    replicas = p.get("replicas", [])
    return [
        f"writer       {_MARK[w['up']]}  "
        + (f"answered in {w['ms']} ms" if w["up"] else w["reason"]),
        f"projector    {_MARK[p['up']]}  " + _position(p),
        *(f"  replica    {r['name']}: {_MARK[r['up']].strip()}, {_position(r)}"
          for r in (replicas if len(replicas) > 1 else ())),
    ]  # fmt: skip


def _working(replica: dict[str, Any]) -> bool:
    """A replica answers and applies (not halted on a poison event)."""
    return bool(replica["up"]) and not replica.get("halted")


def _position(p: dict[str, Any]) -> str:
    where = f"at #{p['at']}, {p['lag']} events behind" if p["up"] else p["reason"]
    if p.get("storage_exhausted"):
        where += f"; STORAGE EXHAUSTED: {p['storage_exhausted']}"
    if p.get("halted"):
        where += f"; HALTED: {p['halted']}"
    return str(where)


def _consumer_lines(readers: list[dict[str, Any]]) -> list[str]:
    """One line per projector consumer; the SSE clients' consumers summed in one."""
    lines = [
        f"  consumer   {c['name']}: {c['pending']} pending, {c['ack_pending']} unacked"
        for c in readers
        if c["kind"] == "projector"
    ]
    sse = [c for c in readers if c["kind"] == "sse"]
    if sse:
        behind = sum(c["pending"] for c in sse)
        lines.append(f"  consumers  {len(sse)} SSE clients, {behind} events pending in total")
    return lines


def members(record: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each member of a cluster's record (cluster.json) and whether it is up: its recorded
    process lives and, for a gateway, `/readyz` answers 200, for a NATS node its port listens:
    `[{"name", "kind", "url", "pid", "up", ["reason"]}]`."""
    found = []
    for name, entry in record.items():
        kind, url, pid = entry["kind"], entry["url"], entry.get("pid")
        why = None if pid and detached.cmdline(pid) == entry.get("cmdline") else "process gone"
        if why is None and kind == "gateway":
            answer = _http(f"{url.rstrip('/')}/readyz")
            why = None if answer.get("http") == 200 else str(answer.get("reason") or answer["http"])
        elif why is None and kind == "nats":
            host, _, port = url.removeprefix("nats://").rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
            except OSError as exc:
                why = f"port does not answer: {exc.strerror or exc}"
        found.append(
            {"name": name, "kind": kind, "url": url, "pid": pid, "up": why is None}
            | ({"reason": why} if why else {})
        )
    return found


def _probed(stack: Target) -> str | catalogue.AppError:
    """The aggregate type to probe the stack's writers on (its recorded app's, see
    ironstar/local.py), or why it cannot be known."""
    try:
        return stack.probe_aggregate()
    except catalogue.AppError as exc:
        return exc


def run(args: argparse.Namespace) -> int:
    """Print the stack's status (`gather`, the gateway, the disk and a cluster's members; lines, or
    one JSON object with --json). Exit status 0 when everything is up, 1 otherwise."""
    stack: Target | None = None
    try:
        stack = target(args)
        url = stack.gateway().rstrip("/")
    except Unavailable as exc:
        said = exc.message
        refused = _refused(stack.nats.url) if stack else None  # not only the missing --url
        if stack and refused:
            said = f"cannot reach NATS at {stack.nats.url}: {refused}; and {said}"
        if args.json:
            print(json.dumps({"nats": {"up": False, "reason": said}}))
        else:
            print(f"ironstar status: {said}")
        return 1
    nats = stack.nats
    try:
        state = asyncio.run(gather(nats, _probed(stack)))
    except (IronstarError, OSError, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, IronstarError) else str(exc) or type(exc).__name__
        state = {"nats": {"url": nats.url, "up": False, "reason": reason}}
    state["gateway"] = {"url": url, **_http(f"{url}/readyz")}
    if stack.data_dir is not None:
        why = storage.shortage([str(stack.data_dir)])
        free = storage.free_bytes(stack.data_dir)
        state["storage"] = {"path": str(stack.data_dir), "free_bytes": free, "full": bool(why)}
    if stack.members is not None:
        state["members"] = members(stack.members)
    healthy = (
        all(m["up"] for m in state.get("members", ()))
        and not state.get("storage", {}).get("full")
        and state["nats"]["up"]
        and state.get("writer", {}).get("up")
        and state.get("projector", {}).get("up")
        and all(_working(r) for r in state.get("projector", {}).get("replicas", ()))
        and state["gateway"].get("http") == 200
    )
    if args.json:
        print(json.dumps(state, default=str))
    else:
        print("\n".join(report(state)))
    return 0 if healthy else 1

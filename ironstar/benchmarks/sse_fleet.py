"""SSE clients for the scale benches (`ironstar bench sse --storm`): a worker process holding a
share of the clients, driven by the bench over a pipe.

The 2 cores and the 20,000 descriptors of one process do not hold 10,000 reading clients
in one Python process, so the bench spreads them over worker processes. Each client is one
raw HTTP/1.0 SSE connection with its own `client_id` (its own durable consumer) and the
filter `todo_list:g<i % groups>`, and reconnects as a browser's EventSource does when its
stream breaks: after the `retry:` hint (2 s) jittered by 0.5 to 1.5 times, with `Last-Event-ID` (the
last `id:` it saw). A connection that fails, or an answer that is not 200, backs off from
there, doubling to 10 s (the dashboard's feed.js), never sooner than a 503's `Retry-After`.
Every answer is counted by status; anything but 200 or 503 with `Retry-After` is a failure.

Commands (a tuple per message, `(name, *arguments)`), each answered with one dict:
`connect` (open every client, at most `gate` opening at once), `target` (the port clients
reconnect to from now on), `progress` (how many reopened since the kill, how many reached
each group's `final` sequence), `verify` (each client's ids against the stream), `stop`.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
from array import array
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

_FRAME = re.compile(rb"^event: ([a-z_]+)\nid: (\d+)$", re.M)
_RETRY_AFTER = re.compile(rb"(?im)^retry-after: *(\d+)")
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")
HEAD_TIMEOUT_S = 30.0  # an answer's head later than this counts as `timeout` and is retried
MAX_BACKOFF_S = 10.0


class Client:
    """One feed: every event id it received (all its connections), with arrival times."""

    __slots__ = (
        "after_kill",
        "group",
        "heard",
        "ids",
        "index",
        "keepalives",
        "opened",
        "path",
        "silence",
        "snapshots",
        "start",
        "times",
    )  # fmt: skip

    def __init__(self, index: int, group: int, path: str) -> None:
        self.index, self.group, self.path = index, group, path
        self.ids = array("q")
        self.times = array(
            "d"
        )  # arrival (time.perf_counter: CLOCK_MONOTONIC, one clock for every process)
        self.start = -1  # the position of the first `connected` frame
        self.opened = 0.0  # when the last connection answered 200
        self.after_kill = False  # reopened since the gateway was killed
        self.snapshots = 0
        self.keepalives = 0  # `: keep-alive` comments received
        self.heard = 0.0  # the last read of the open connection
        self.silence = 0.0  # the longest time between two reads of one connection


class Fleet:
    """A worker's clients and their counters."""

    def __init__(self, first: int, count: int, groups: int, tag: str, port: int) -> None:
        self.port = port
        self.clients = [
            Client(i, i % groups, f"/api/events?topics=todo_list:g{i % groups}&client_id={tag}{i}")
            for i in range(first, first + count)
        ]
        self.phase = "connect"
        self.statuses: dict[str, Counter[str]] = {"connect": Counter(), "storm": Counter()}
        self.failures: list[str] = []
        self.refusals: list[str] = []  # bodies of the first 503s
        self.tasks: list[asyncio.Task[None]] = []
        self.killed_at = 0.0

    async def connect(self, gate_size: int) -> dict[str, Any]:
        """Open every client (at most `gate_size` opening at once); their readers keep running."""
        gate = asyncio.Semaphore(gate_size)
        started = time.perf_counter()
        opened = [asyncio.get_running_loop().create_future() for _ in self.clients]
        self.tasks = [
            asyncio.create_task(self._follow(c, gate, done))
            for c, done in zip(self.clients, opened, strict=True)
        ]
        await asyncio.gather(*opened)
        return {
            "connected": len(self.clients),
            "seconds": time.perf_counter() - started,
            "statuses": dict(self.statuses["connect"]),
            "failures": self.failures[:5],
        }

    async def _follow(
        self, client: Client, gate: asyncio.Semaphore | None, opened: asyncio.Future[None]
    ) -> None:
        delay = 2.0
        while True:
            if gate is not None and not opened.done():
                async with gate:
                    answer = await self._open(client)
            else:
                answer = await self._open(client)
            if isinstance(answer, tuple):
                delay = 2.0
                if not opened.done():
                    opened.set_result(None)
                await self._read(client, *answer)
                await asyncio.sleep(2.0 * random.uniform(0.5, 1.5))  # EventSource's `retry:`
                continue
            await asyncio.sleep(
                max(answer, delay) * random.uniform(0.5 if answer == 0 else 1.0, 1.5)
            )
            delay = min(2 * delay, MAX_BACKOFF_S)

    async def _open(
        self, client: Client
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | float:
        """The open stream, or how long to wait at least before the next attempt (0: back off)."""
        counts = self.statuses[self.phase]
        writer = None
        try:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
            except BaseException:
                sock.close()
                raise
            reader, writer = await asyncio.open_connection(sock=sock)
            last = f"Last-Event-ID: {client.ids[-1] if client.ids else client.start}\r\n"
            resume = last if client.start >= 0 else ""
            writer.write(f"GET {client.path} HTTP/1.0\r\nHost: bench\r\n{resume}\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except TimeoutError:
            counts["timeout"] += 1
            return self._close(writer, 0)
        except (OSError, asyncio.IncompleteReadError) as exc:
            counts["refused" if isinstance(exc, ConnectionRefusedError) else "broken"] += 1
            return self._close(writer, 0)
        status = _STATUS.match(head)
        code = status.group(1).decode() if status else "malformed"
        wait = _RETRY_AFTER.search(head)
        if code == "200":
            counts["200"] += 1
            client.opened = time.perf_counter()
            client.after_kill = client.after_kill or self.phase == "storm"
            assert writer is not None
            return reader, writer
        if code == "503" and wait:
            counts["503 with Retry-After"] += 1
            if len(self.refusals) < 3:
                self.refusals.append((await _rest(reader))[:300].decode(errors="replace"))
            return self._close(writer, float(wait.group(1)))
        counts[f"{code} (failure)"] += 1
        if len(self.failures) < 20:
            body = await _rest(reader)
            self.failures.append(f"client {client.index}: {head[:200]!r} {body[:300]!r}")
        return self._close(writer, 0)

    @staticmethod
    def _close(writer: asyncio.StreamWriter | None, wait: float) -> float:
        if writer is not None:
            writer.close()
        return wait

    async def _read(
        self, client: Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        rest = b""
        client.heard = time.perf_counter()
        try:
            while data := await reader.read(65536):
                now = time.perf_counter()
                client.silence = max(client.silence, now - client.heard)
                client.heard = now
                client.keepalives += data.count(b": keep-alive\n")
                data = rest + data
                cut = data.rfind(b"\n\n") + 2
                rest = data[cut:]
                for event, seq in _FRAME.findall(data, 0, cut):
                    if event == b"todo_added":
                        client.ids.append(int(seq))
                        client.times.append(now)
                    elif event == b"connected" and client.start < 0:
                        client.start = int(seq)
                if b"event: snapshot" in data[:cut]:
                    client.snapshots += 1
        except OSError:
            pass  # reset by a killed gateway: reconnect
        finally:
            writer.close()

    def progress(self, final: dict[int, int]) -> dict[str, Any]:
        """How many reopened since the kill, and how many hold their group's `final` sequence."""
        done = sum(
            c.group not in final or (bool(c.ids) and c.ids[-1] >= final[c.group])
            for c in self.clients
        )
        return {"reopened": sum(c.after_kill for c in self.clients), "complete": done}

    def verify(self, appended: list[tuple[int, int, float]]) -> dict[str, Any]:
        """Each client's ids against the stream: `appended` is (sequence, group, append time);
        every id after a client's first position must arrive once, in order. The caught-up
        time of a client is when it received the first event appended after it last reopened
        (or its group's last event, for a client that reopened after the appends ended)."""
        by_group: dict[int, list[tuple[int, float]]] = {}
        for seq, group, at in appended:
            by_group.setdefault(group, []).append((seq, at))
        gaps = dups = exact = 0
        caught: list[float] = []
        after_open: list[float] = []  # from the reopening 200 to caught up
        for c in self.clients:
            expected = [s for s, _ in by_group.get(c.group, []) if s > c.start]
            got = list(c.ids)
            dups += len(got) - len(set(got))
            gaps += len(set(expected) - set(got))
            exact += got == expected
            times = dict(by_group.get(c.group, []))
            last = by_group[c.group][-1][0] if c.group in by_group else -1
            for seq, arrived in zip(c.ids, c.times, strict=True):
                # caught up: an event appended after it reopened, or the last one appended
                if arrived > self.killed_at and (times.get(seq, 0.0) > c.opened or seq == last):
                    caught.append(arrived - self.killed_at)
                    after_open.append(arrived - c.opened)
                    break
            else:
                caught.append(float("inf"))
        return {
            "exact": exact,
            "gaps": gaps,
            "duplicates": dups,
            "caught_s": caught,
            "after_open_s": after_open,
            "snapshots": sum(c.snapshots for c in self.clients),
            "received": sum(len(c.ids) for c in self.clients),
            "statuses": {k: dict(v) for k, v in self.statuses.items()},
            "failures": self.failures[:5],
            "refusals": self.refusals,
            "keepalives_min": min(c.keepalives for c in self.clients),
            "longest_silence_s": max(c.silence for c in self.clients),
        }


async def _rest(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(2000), 2)
    except (TimeoutError, OSError):
        return b""


def main(conn: Connection, first: int, count: int, groups: int, tag: str, port: int) -> None:
    """A worker process: `count` clients from index `first`, driven by commands on `conn`."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_serve(conn, Fleet(first, count, groups, tag, port)))


async def _serve(conn: Connection, fleet: Fleet) -> None:
    while True:
        name, *arguments = await asyncio.to_thread(conn.recv)
        if name == "connect":
            conn.send(await fleet.connect(*arguments))
        elif name == "target":
            fleet.port, fleet.killed_at = arguments
            fleet.phase = "storm"
            conn.send({})
        elif name == "progress":
            conn.send(fleet.progress(*arguments))
        elif name == "verify":
            conn.send(fleet.verify(*arguments))
        else:  # stop
            for task in fleet.tasks:
                task.cancel()
            await asyncio.gather(*fleet.tasks, return_exceptions=True)
            conn.send({})
            return

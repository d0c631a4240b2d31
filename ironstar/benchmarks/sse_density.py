"""`ironstar bench sse --density`: N clients held on one gateway for `--hold` s, each with its own
durable consumer, and every one checked live (issue 15, density).

The same stack and clients as `--storm` (`sse_storm.py`, `sse_fleet.py`: worker processes,
one `client_id` each, filter `todo_list:g<i % groups>`). Once all are connected, events are
appended slowly for `--hold` seconds: one event per filter every `--event-every` seconds
(default 60), so the clients are idle between events and the gateway's
keep-alives (every `IRONSTAR_GATEWAY_SSE_KEEPALIVE_S`, 15 s, of silence) must reach them.
Figures: gateway RSS per idle client (after connecting, over the gateway's RSS before any),
nats-server RSS per consumer (the same way), both again at the end of the hold; the gateway's
and nats-server's CPU while holding; then each client's ids against the stream (exact, gaps,
duplicates), the fewest keep-alives a client received, and the longest silence any client
heard on its connection.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ironstar.benchmarks.sse import _cpu_s, _rss_kib, append
from ironstar.benchmarks.sse_storm import Stack, stack, stop_gateway, until_complete, verdict
from ironstar.natsserver import free_port

_STORM = ("all_caught_up_after_s", "caught_up_p50_s", "reopen_to_caught_up_p50_s",
          "reopen_to_caught_up_max_s", "clients_not_caught_up", "storm_statuses",
          "storm_failures")  # fmt: skip


def add(parser: argparse.ArgumentParser) -> None:
    """This mode's options on `ironstar bench sse`."""
    parser.add_argument("--density", action="store_true",
                        help="hold --clients clients (default 10000) for --hold s, each checked "
                        "live")  # fmt: skip
    parser.add_argument("--hold", type=float, default=600.0, help="--density: seconds held")
    parser.add_argument("--event-every", type=float, default=60.0,
                        help="--density: seconds between two events of a filter")  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The density bench (see the module docstring): one dict of figures."""
    clients = int(args.clients or 10_000)
    async with stack(args, clients) as bench:
        return {"clients": clients, **await _density(bench)}


async def _density(bench: Stack) -> dict[str, Any]:
    args, clients = bench.args, bench.clients
    port = free_port()
    gateway = bench.gateway(port)
    workers = bench.workers(port)
    try:
        gateway_before, nats_before = _rss_kib(gateway.pid), _rss_kib(bench.nats_pid)
        figures: dict[str, Any] = {"workers": len(workers.processes), **await workers.connect()}
        gateway_idle, nats_idle = _rss_kib(gateway.pid), _rss_kib(bench.nats_pid)
        figures["gateway_rss_kib_per_idle_client"] = (gateway_idle - gateway_before) / clients
        figures["nats_rss_kib_per_consumer"] = (nats_idle - nats_before) / clients
        rate = clients / args.event_every  # deliveries/s: each client gets one per period
        figures["deliveries_per_s_asked"] = rate
        cpu, nats_cpu, bench_cpu = _cpu_s(gateway.pid), _cpu_s(bench.nats_pid), workers.cpu_s()
        started = time.perf_counter()
        appended = await append(bench.nc, bench.nats, args.groups, rate * args.groups / clients,
                                lambda: time.perf_counter() - started >= args.hold)  # fmt: skip
        held = time.perf_counter() - started
        figures["held_s"] = held
        figures["gateway_cpu_share_of_a_core"] = (_cpu_s(gateway.pid) - cpu) / held
        figures["nats_cpu_share_of_a_core"] = (_cpu_s(bench.nats_pid) - nats_cpu) / held
        figures["bench_cpu_share_of_a_core"] = (workers.cpu_s() - bench_cpu) / held
        figures["gateway_rss_kib_per_client_at_end"] = (
            _rss_kib(gateway.pid) - gateway_before
        ) / clients
        figures["nats_rss_kib_per_consumer_at_end"] = (
            _rss_kib(bench.nats_pid) - nats_before
        ) / clients
        final = {group: seq for seq, group, _ in appended}
        since = time.perf_counter()
        figures["last_event_everywhere_after_s"] = await until_complete(
            workers, clients, final, since, 60
        )
        figures["appended"] = len(appended)
        figures.update(verdict(await workers.ask("verify", appended), clients))
        for key in _STORM:  # a storm's figures: nobody reconnects here
            figures.pop(key, None)
        opened = figures.pop("connect_statuses_at_end", {}).get("200", clients)
        figures["reconnects_while_held"] = opened - clients
        return figures
    finally:
        await workers.stop()
        stop_gateway(gateway)

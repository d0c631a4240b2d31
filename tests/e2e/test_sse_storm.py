"""A reconnect storm at small scale: a gateway holding 50 clients, each with its own durable
consumer, is killed -9 while appends go on; every client reconnects with `Last-Event-ID` (to
the gateway restarted on its port, or to a second gateway on a 3-node nats cluster) and must
end with every event of its filter exactly once, in order. The same path `ironstar bench sse
--storm` measures at 10,000 clients (ironstar/benchmarks/sse_storm.py): the bench's own
per-client check against the stream is what is asserted here."""

from __future__ import annotations

import json

import pytest

from tests.support.processes import run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "elsewhere", [False, True], ids=["restarted", "second-gateway-on-a-3-node-cluster"]
)
def test_each_client_of_a_gateway_killed_mid_stream_resumes_gap_free_and_duplicate_free(
    elsewhere: bool,
) -> None:
    args = ["bench", "sse", "--storm", "--clients", "50", "--workers", "2", "--rate", "500",
            "--warmup", "1", "--tail-s", "1", "--deadline", "45", "--json"]  # fmt: skip
    done = run_cli({}, *args, *(["--second-gateway", "--cluster"] if elsewhere else []))
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["appended"] > 0
    assert figures["clients_exact"] == 50, figures
    assert (figures["gaps"], figures["duplicates"], figures["snapshots"]) == (0, 0, 0), figures
    assert figures["clients_not_caught_up"] == 0, figures
    assert figures["storm_failures"] == 0, figures["failure_examples"]
    assert figures["storm_statuses"]["200"] >= 50
    assert figures["nats_healthz_failed"] == 0
    if elsewhere:  # every node healthy, the meta leader's load reported
        assert [n["healthz_failed"] for n in figures["nats_nodes"]] == [0, 0, 0], figures
        assert figures["meta_leader"] in {n["node"] for n in figures["nats_nodes"]}
        assert figures["meta_leader_cpu_share_of_a_core"] >= 0

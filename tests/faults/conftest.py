"""A 3-node JetStream cluster with two of each service, shared by the fault rounds.

Each round adds a row to `REPORT`; the run ends by printing the table, which is what
docs/operations.md quotes (`pytest tests/faults`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client

from common import bus
from common.settings import NatsSettings
from ironstar.cluster import Cluster

CLUSTER_ENV = {
    "IRONSTAR_GATEWAY_SSE_KEEPALIVE_S": "2",
    "IRONSTAR_GATEWAY_SSE_RETRY_MS": "200",
}


@dataclass(frozen=True)
class Row:
    round: str
    seconds: float
    commands: int
    stall_s: float
    errors: str
    unreachable: int
    sse_reconnects: int
    lost: int


REPORT: list[Row] = []


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory: Path = tmp_path_factory.mktemp("cluster")
    topology = Cluster(directory, http_port=0, extra_env=CLUSTER_ENV)
    try:
        topology.start(say=False)
        yield topology
    finally:
        topology.stop()


@pytest.fixture
async def admin(cluster: Cluster) -> AsyncIterator[Client]:
    """A NATS client of the test's own, connected to every node."""
    client = await bus.connect(NatsSettings(url=cluster.nats_url), name="fault-tests")
    yield client
    await client.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    write = terminalreporter.write_line
    write("")
    write("| round | s | commands | longest write stall | errors clients saw | "
          "connection failures | SSE reconnects | events lost |")  # fmt: skip
    write("|---|---|---|---|---|---|---|---|")
    for row in REPORT:
        write(
            f"| {row.round} | {row.seconds:.0f} | {row.commands} | {row.stall_s:.2f} s | "
            f"{row.errors or 'none'} | {row.unreachable} | {row.sse_reconnects} | {row.lost} |"
        )

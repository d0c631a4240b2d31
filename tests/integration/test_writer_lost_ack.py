"""A lost ack is retried with the same message ids and the command is applied once.

The ack is lost for real: the test's own nats-server is paused (SIGSTOP) while the append
is in flight, so the request times out; the store's retry hook resumes it, the server then
stores the first publish and refuses the retry, and the writer finds its own command.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from common import bus
from common.settings import NatsSettings
from common.subjects import Subjects
from ironstar.natsserver import NatsServer, free_port
from tests.support.commands import command
from tests.support.waiting import until
from writer.handler import CommandHandler
from writer.store import JetStreamEventStore


@pytest.fixture
def paused_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", free_port()).start(log=tmp_path / "nats.log")
    yield server
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
async def client(paused_server: NatsServer) -> AsyncIterator[tuple[Client, NatsSettings]]:
    settings = NatsSettings(url=paused_server.url, prefix="lost", stream="LOST")
    nc = await bus.connect(settings, name="lost-ack")
    await bus.ensure_stream(nc, settings)
    yield nc, settings
    await nc.drain()


@pytest.mark.parametrize("events", [1, 2])
async def test_a_lost_ack_is_retried_with_the_same_message_ids_and_stores_once(
    paused_server: NatsServer, client: tuple[Client, NatsSettings], events: int
) -> None:
    nc, settings = client
    assert paused_server.process is not None
    pid = paused_server.process.pid
    retries: list[int] = []

    def resume() -> None:
        retries.append(1)
        os.kill(pid, signal.SIGCONT)

    store = JetStreamEventStore(nc, settings.stream, Subjects("lost"), 2.0, on_retry=resume)
    handler = CommandHandler(store, max_retries=3, cache_size=10)
    for n in range(events):
        await handler.handle(
            "todo_list", command("l", "add_todo", f"a{n}", todo_id=f"t{n}", text="x")
        )
        await handler.handle("todo_list", command("l", "complete_todo", f"c{n}", todo_id=f"t{n}"))
    before = (await nc.jetstream().stream_info(settings.stream)).state.messages

    retries.clear()  # only the paused append counts
    os.kill(pid, signal.SIGSTOP)
    until(lambda: _state(pid) == "T", 10, lambda: _state(pid))  # stopped before the command
    result = await handler.handle("todo_list", command("l", "clear_completed", "clear"))

    assert retries  # at least once; on a loaded machine the resumed server may need two
    assert len(result.events) == events
    assert [e.metadata.command_id for e in result.events] == ["clear"] * events
    state = (await nc.jetstream().stream_info(settings.stream)).state
    assert state.messages == before + events
    assert result.sequence == state.last_seq


def _state(pid: int) -> str:
    """The process's state letter from /proc (`T`: stopped by a signal)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]

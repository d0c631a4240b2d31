"""Shared fixtures: one real nats-server per session; a fresh stream and prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from nats.aio.client import Client

from common import bus
from common.settings import NatsSettings
from ironstar.natsserver import NatsServer, free_port
from tests.support.stack import Stack

# No per-example deadline: the suite shares two cores with real servers, so one example's wall
# time says nothing about the property (a first example paying a lazy import took 560 ms).
settings.register_profile("ironstar", deadline=None)
settings.load_profile("ironstar")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    directory = tmp_path_factory.mktemp("nats")
    server = NatsServer(directory, free_port()).start(log=directory / "nats-server.log")
    yield server
    server.stop()


@pytest.fixture
def nats_settings(nats_server: NatsServer) -> NatsSettings:
    """Settings with a stream and subject prefix of this test's own."""
    token = uuid.uuid4().hex[:10]
    return NatsSettings(url=nats_server.url, prefix=f"t{token}", stream=f"T{token.upper()}")


@pytest.fixture
async def nc(nats_settings: NatsSettings) -> AsyncIterator[Client]:
    client = await bus.connect(nats_settings, name="tests")
    await bus.ensure_stream(client, nats_settings)
    yield client
    await client.drain()


@pytest.fixture
def service_env(nats_settings: NatsSettings, tmp_path: Path) -> dict[str, str]:
    """Environment that points a service process at this test's stream."""
    return {
        "IRONSTAR_NATS_URL": nats_settings.url,
        "IRONSTAR_NATS_PREFIX": nats_settings.prefix,
        "IRONSTAR_NATS_STREAM": nats_settings.stream,
        "IRONSTAR_PROJECTOR_DATA_DIR": str(tmp_path / "projector"),
        "IRONSTAR_GATEWAY_PORT": str(free_port()),
    }


@pytest.fixture
def stack(service_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    """writer, projector and gateway as processes on this test's stream."""
    running = Stack(service_env, tmp_path)
    yield running
    running.stop()

"""A running system for the security tests: writer, projector and gateway as processes,
with bearer-token auth on, against the session's nats-server on a prefix of their own.

Tokens and `running` live in tests/support/secured.py (imported explicitly)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ironstar.natsserver import NatsServer
from tests.support.secured import SecuredStack, running


@pytest.fixture(scope="module")
def stack(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredStack]:
    """One secured stack per module, with tight request limits and at most 2 events per
    command."""
    workdir = tmp_path_factory.mktemp("secured")
    with running(
        nats_server,
        workdir,
        IRONSTAR_LIMIT_REQUESTS_PER_S="50",
        IRONSTAR_LIMIT_BURST="100",
        IRONSTAR_LIMIT_BODY_TIMEOUT_S="1",
        IRONSTAR_LIMIT_HEADER_TIMEOUT_S="1",
        IRONSTAR_WRITER_MAX_EVENTS_PER_COMMAND="2",
    ) as running_stack:
        yield running_stack

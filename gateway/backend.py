"""The gateway's port to the other services: commands and queries over NATS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.client import Client

from common import bus
from common.domain import aggregate
from common.messages import CommandRequest, QueryRequest
from common.settings import GatewaySettings, NatsSettings
from common.subjects import Subjects, valid_id
from common.telemetry import correlation_id
from gateway.auth import ACTOR

_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Backend:
    nc: Client
    nats: NatsSettings
    settings: GatewaySettings

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.nats.prefix)

    async def command(
        self,
        aggregate_type: str,
        aggregate_id: str,
        command_type: str,
        payload: dict[str, Any],
        command_id: str,
        expected_sequence: int | None,
    ) -> bytes:
        """Forward a command to a writer; returns the writer's JSON result as is."""
        aggregate(aggregate_type)  # 404 before any subject is built
        request = CommandRequest(
            aggregate_id=valid_id(aggregate_id),
            type=command_type,
            payload=payload,
            command_id=command_id,
            correlation_id=correlation_id(),
            expected_sequence=expected_sequence,
            actor=ACTOR.get(),
        )
        return await bus.request(
            self.nc,
            self.subjects.command(aggregate_type),
            _json.encode(request),
            self.nats.request_timeout_s,
            "writer",
        )

    async def query(
        self, projection: str, name: str, params: dict[str, Any], min_seq: int
    ) -> bytes:
        """Ask a projector replica; it answers once it has applied `min_seq`."""
        wait = self.settings.query_timeout_s
        request = QueryRequest(name=name, params=params, min_seq=min_seq, timeout_s=wait)
        return await bus.request(
            self.nc,
            self.subjects.query(projection),
            _json.encode(request),
            wait + self.nats.request_timeout_s,
            f"projector ({projection})",
        )

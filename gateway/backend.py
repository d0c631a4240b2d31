"""The gateway's port to the other services: commands and queries over NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
from nats.aio.client import Client

from common import bus, catalogue
from common.errors import Unavailable
from common.messages import CommandRequest, QueryRequest
from common.settings import GatewaySettings, NatsSettings
from common.subjects import Subjects, valid_id
from common.telemetry import correlation_id
from gateway.security.auth import ACTOR
from gateway.security.grants import require_read
from gateway.storage import StorageWatch

_json = msgspec.json.Encoder()


class Read(NamedTuple):
    """A read-model answer as the gateway's pages use it: the stream `sequence` it is as of
    and its `result` (see `result_of`)."""

    sequence: int
    result: Any


def result_of(reply: Mapping[str, Any]) -> Any:
    """A query reply's (`{"sequence", "result", "truncated"?}`) result; an object result the
    read model cut to fit one answer carries the reply's `truncated`
    (`{field, returned, total, max_bytes}`)."""
    result = reply["result"]
    if "truncated" in reply and isinstance(result, dict):
        result = {**result, "truncated": reply["truncated"]}
    return result


@dataclass(frozen=True)
class Backend:
    """The gateway's port to the writers and projectors: requests over NATS on `nc` with the
    subjects of `nats_settings`, answered 503 once `closing` is set, and commands refused while
    `storage` reports the event store's disk full. One per process, provided to handlers as the
    `backend` dependency."""

    nc: Client
    nats_settings: NatsSettings
    settings: GatewaySettings
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    storage: StorageWatch = field(default_factory=StorageWatch)

    async def _unless_closing(self, request: Awaitable[bytes]) -> bytes:
        """A request still waiting when the gateway shuts down gets a 503, not a 500.

        (uvicorn cancels what outlives its graceful shutdown.) A command cut off here is
        safe to resend with its command id.
        """
        answer = asyncio.ensure_future(request)
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            await asyncio.wait({answer, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if not answer.done():
            answer.cancel()
            raise Unavailable("this gateway is shutting down; retry on another", retry_after=1)
        return answer.result()

    @property
    def subjects(self) -> Subjects:
        """The NATS subjects under this deployment's prefix (`common.subjects.Subjects`)."""
        return Subjects(self.nats_settings.prefix)

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
        catalogue.current().aggregate(aggregate_type)  # 404 before any subject is built
        request = CommandRequest(
            aggregate_id=valid_id(aggregate_id),
            type=command_type,
            payload=payload,
            command_id=command_id,
            correlation_id=correlation_id(),
            expected_sequence=expected_sequence,
            actor=ACTOR.get(),
        )
        return await self._unless_closing(
            bus.request(
                self.nc,
                self.subjects.command(aggregate_type),
                _json.encode(request),
                self.nats_settings.request_timeout_s,
                "writer",
            )
        )

    async def live_round(self, body: bytes, wait_s: float) -> bytes:
        """A live round (`LiveRound` JSON) asked of a projector replica: its reply,
        `{"answers": [...]}` (`projector/liveround.py`), or the round's error. Grants were
        checked when each key's feeds subscribed (`gateway/live/follow.py`)."""
        return await self._unless_closing(
            bus.request(
                self.nc,
                self.subjects.query("live"),
                body,
                wait_s + self.nats_settings.request_timeout_s,
                "projector (live queries)",
                first=self.subjects.current("live"),
            )
        )

    async def read(self, projection: str, name: str, params: dict[str, Any], min_seq: int) -> Read:
        """`query`'s answer decoded: its sequence and `result_of` it. Raises what `query`
        raises (401/403 grants, 404/422 from the projector, 503/504)."""
        reply = json.loads(await self.query(projection, name, params, min_seq))
        return Read(int(reply["sequence"]), result_of(reply))

    async def query(
        self,
        projection: str,
        name: str,
        params: dict[str, Any],
        min_seq: int,
        live: bool = False,
        wait_s: float | None = None,
    ) -> bytes:
        """Ask a projector replica, a caught-up one if any is (`Subjects.current`); it
        answers once it has applied `min_seq`.

        Only for a principal granted what the answer shows (`gateway/security/grants.py`): 401/403.
        `live`: a live query's evaluation (`QueryRequest.live`). `wait_s`: the seconds it
        has (default `query_timeout_s`): for `min_seq`, and a live SQL's wait for a slot
        (it then runs the projector's whole SQL time limit, `projector/queries.py`).
        """
        require_read(projection, params, name)
        wait = self.settings.query_timeout_s if wait_s is None else wait_s
        request = QueryRequest(
            name=name,
            params=params,
            min_seq=min_seq,
            timeout_s=wait,
            actor=ACTOR.get(),
            live=live,
        )
        return await self._unless_closing(
            bus.request(
                self.nc,
                self.subjects.query(projection),
                _json.encode(request),
                wait + self.nats_settings.request_timeout_s,
                f"projector ({projection})",
                first=self.subjects.current(projection),
            )
        )

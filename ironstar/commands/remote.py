"""What `ironstar query|snapshot|rebuild` share: one request to a running projector."""

from __future__ import annotations

from typing import Any

import msgspec

from common import bus
from common.messages import QueryRequest
from common.settings import NatsSettings
from common.subjects import Subjects
from common.telemetry import configure_logging


async def ask(
    settings: NatsSettings, target: str, name: str, params: dict[str, Any], min_seq: int = 0
) -> dict[str, Any]:
    """Send one query request to `<prefix>.query.<target>`; returns {"sequence", "result"}."""
    configure_logging("ironstar", "ERROR")  # stdout is for results; problems are raised
    nc = await bus.connect(settings, name=f"ironstar-cli-{target}", wait_s=3)
    try:
        wait = settings.request_timeout_s
        request = QueryRequest(name=name, params=params, min_seq=min_seq, timeout_s=wait)
        reply = await bus.request(
            nc,
            Subjects(settings.prefix).query(target),
            msgspec.json.encode(request),
            wait * 2,
            "projector",
        )
    finally:
        await nc.close()
    answer: dict[str, Any] = msgspec.json.decode(reply)
    return answer

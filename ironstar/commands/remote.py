"""What `ironstar query|snapshot|rebuild|status|demo` share: finding the stack, asking it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec

from common import bus
from common.errors import Unavailable
from common.messages import QueryRequest
from common.settings import NatsSettings
from common.subjects import Subjects
from common.telemetry import configure_logging
from ironstar import local


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """`--data-dir`: the stack of this `ironstar up` / `ironstar cluster up` data dir."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the stack running with this data dir (default: IRONSTAR_NATS_URL if set, "
        "else the stack in ./.ironstar, else ./.ironstar-cluster)",
    )


def target(args: argparse.Namespace) -> local.Target:
    """The stack the command is asked about, said on stderr; Unavailable when none runs."""
    found = local.target(args.data_dir, url=getattr(args, "url", None))
    found.say()
    return found


async def ask(
    settings: NatsSettings, target: str, name: str, params: dict[str, Any], min_seq: int = 0
) -> dict[str, Any]:
    """Send one query request to `<prefix>.query.<target>` (a caught-up replica's first:
    `Subjects.current`); returns {"sequence", "result"}.
    Raises Unavailable (saying how to start a stack) when NATS or no projector answers,
    and the projector's error for a refused query."""
    configure_logging("ironstar", "ERROR")  # stdout is for results; problems are raised
    try:
        nc = await bus.connect(settings, name=f"ironstar-cli-{target}", wait_s=3)
    except Unavailable as exc:
        raise Unavailable(f"{exc.message}; is the stack running? {local.start_hint()}") from None
    try:
        wait = settings.request_timeout_s
        request = QueryRequest(name=name, params=params, min_seq=min_seq, timeout_s=wait)
        subjects = Subjects(settings.prefix)
        reply = await bus.request(
            nc,
            subjects.query(target),
            msgspec.json.encode(request),
            wait * 2,
            "projector",
            first=subjects.current(target),  # a caught-up replica if any, as the gateway asks
        )
    finally:
        await nc.close()
    answer: dict[str, Any] = msgspec.json.decode(reply)
    return answer

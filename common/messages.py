"""Request and reply bodies exchanged between the services over NATS."""

from __future__ import annotations

from typing import Any

import msgspec

from common.envelope import Envelope


class CommandRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Sent by the gateway to `<prefix>.cmd.<aggregate_type>`."""

    aggregate_id: str
    type: str
    payload: dict[str, Any] = {}
    command_id: str
    correlation_id: str
    expected_sequence: int | None = None  # the client's If-Match: 412 instead of a retry
    actor: str | None = None


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """`sequence` is the stream sequence of the aggregate's last event after the command."""

    sequence: int
    version: int
    events: list[Envelope]
    duplicate: bool = False


class QueryRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Sent to `<prefix>.query.<projection>`; answered once `min_seq` is applied."""

    name: str
    params: dict[str, Any] = {}
    min_seq: int = 0
    timeout_s: float = 5.0
    actor: str | None = None  # the authenticated subject: ad-hoc SQL is budgeted per principal
    # A live query's evaluation: the reply's `sequence` is the checkpoint the answer is as
    # of (read in its transaction), and `reads` the tables it depends on ("*": any).
    live: bool = False


class LiveKey(msgspec.Struct, frozen=True, kw_only=True):
    """One catalogue query of a live round: `projection`.`name` with its `params`."""

    projection: str
    name: str
    params: dict[str, Any] = {}


class LiveRound(msgspec.Struct, frozen=True, kw_only=True):
    """Sent to `<prefix>.query.live` (issue 17): every due catalogue key of a gateway's live
    queries, answered together once `min_seq` is applied, within `timeout_s` seconds; the
    reply is `{"answers": [...]}` in `keys`' order (`projector/liveround.py`)."""

    keys: list[LiveKey]
    min_seq: int = 0
    timeout_s: float = 5.0


class CommandBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The HTTP body of `POST /api/commands/{aggregate_type}/{aggregate_id}`."""

    type: str
    payload: dict[str, Any] | None = None
    command_id: str | None = None

"""Decoding a batch of deliveries into envelopes, dead letters and domain events.

Pure, and shared by the projector (`projector/replica.py`) and the feed process, which
decodes and stages catch-up batches for it (`projector/prestage.py`).
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

from common import envelope as codec
from common.envelope import Stored
from projector import collector
from projector.feed import Delivery
from projector.readmodel_isolation import DeadLetter

LOGGED_IDS = 100  # correlation ids per batch_applied log line at most
QUIET_ABOVE = 1_000  # events: a larger batch (catching up) is applied without cyclic GC


class Decoded(NamedTuple):
    """A batch decoded (`decode`): its envelopes, a dead letter for each message that is
    not one, the domain events the check built and every delivery's subject, by sequence."""

    events: list[Stored]
    dead: list[DeadLetter]
    typed: dict[int, Any]
    subjects: dict[int, str]


def decode(deliveries: list[Delivery]) -> Decoded:
    """Decode a batch: a dead letter for each message that is not an envelope of the
    aggregate whose subject it is on (the same check as the writer's and the feed's:
    `common.envelope.decode_stored`). Pure; a catch-up batch (more than `QUIET_ABOVE`
    deliveries) runs with cyclic GC paused, and may be decoded on another thread than the
    one that applies it (`projector/main.py`), or in the feed process
    (`projector/prestage.py`)."""
    events: list[Stored] = []
    dead: list[DeadLetter] = []
    typed: dict[int, Any] = {}
    with quiet(deliveries):
        for sequence, subject, data in deliveries:
            parts = subject.rsplit(".", 2)  # <prefix>.events . <type> . <id>
            try:
                envelope, typed[sequence] = codec.decode_checked(data, *parts[-2:])
            except codec.Undecodable as exc:
                dead.append(DeadLetter(sequence, subject, f"cannot decode: {exc}", data))
            else:
                events.append(Stored(sequence, envelope))
        subjects = {sequence: subject for sequence, subject, _ in deliveries}
    return Decoded(events, dead, typed, subjects)


def quiet(deliveries: list[Delivery]) -> contextlib.AbstractContextManager[None]:
    """Cyclic GC paused for a catch-up batch (more than `QUIET_ABOVE` deliveries)."""
    if len(deliveries) > QUIET_ABOVE:
        return collector.paused()
    return contextlib.nullcontext()

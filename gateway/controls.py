"""A feed's per-client controls, parsed from its query (pure): policy, capacity, windows,
format. Server defaults and caps come from `GatewaySettings`; a value that cannot be
understood is a 422 naming its parameter, a value over a cap is lowered to the cap."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import Invalid
from common.settings import GatewaySettings
from gateway.policy import Policy, parse_policy

FORMATS = ("json", "datastar")
_ON = ("", "on", "true", "yes")
_OFF = ("off", "false", "no", "0")


@dataclass(frozen=True, slots=True)
class Controls:
    policy: Policy
    capacity: int
    debounce_s: float | None  # None: off
    debounce_max_wait_s: float
    batch_s: float | None  # None: off
    batch_max: int
    format: str


def parse_window(value: str | None, field: str, default_ms: int, max_ms: int) -> float | None:
    """Absent or `off` → None; `on` → the default; a number of ms → that, up to `max_ms`."""
    if value is None or value.lower() in _OFF:
        return None
    if value.lower() in _ON:
        return default_ms / 1000
    if not (value.isascii() and value.isdigit() and len(value) <= 9):  # no '²', no 10**5000
        raise Invalid(
            f"{field} {value[:40]!r} is not a number of milliseconds, 'on' or 'off'",
            field=field,
            fields=[field],
        )
    return min(int(value), max_ms) / 1000


def parse_format(value: str | None, datastar_request: bool) -> str:
    if value is None or value == "":
        return "datastar" if datastar_request else "json"
    if value not in FORMATS:
        raise Invalid(
            f"format {value[:40]!r} is unknown; use json or datastar",
            field="format",
            fields=["format"],
        )
    return value


def parse(
    settings: GatewaySettings,
    *,
    policy: str | None,
    capacity: int | None,
    debounce_ms: str | None,
    batch_ms: str | None,
    format: str | None,
    datastar_request: bool,
) -> Controls:
    cap = settings.sse_max_window_ms
    return Controls(
        policy=parse_policy(policy),
        capacity=min(capacity or settings.sse_capacity, settings.sse_max_capacity),
        debounce_s=parse_window(debounce_ms, "debounce_ms", settings.sse_debounce_ms, cap),
        debounce_max_wait_s=settings.sse_debounce_max_wait_ms / 1000,
        batch_s=parse_window(batch_ms, "batch_ms", settings.sse_batch_ms, cap),
        batch_max=settings.sse_batch_max,
        format=parse_format(format, datastar_request),
    )

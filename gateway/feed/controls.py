"""A feed's per-client controls, parsed from its query (pure): policy, capacity, windows,
format. Server defaults and caps come from `GatewaySettings`; a value that cannot be
understood is a 422 naming its parameter, a value over a cap is lowered to the cap."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import Invalid
from common.settings import GatewaySettings
from gateway.feed.policy import Policy, parse_policy

FORMATS = ("json", "datastar")
_ON, _OFF = "on", "off"  # besides a number of ms: nothing else (no true/yes) is documented


@dataclass(frozen=True, slots=True)
class Controls:
    """A feed's controls, parsed and capped (`parse`): windows in seconds (None: off), `capacity`
    and `batch_max` in events, `format` `json` or `datastar`."""

    policy: Policy
    capacity: int
    debounce_s: float | None  # None: off
    debounce_max_wait_s: float
    batch_s: float | None  # None: off
    batch_max: int
    format: str


def parse_window(value: str | None, field: str, default_ms: int, max_ms: int) -> float | None:
    """Absent, `off` or 0 → None; `on` → the default; a number of ms → that, up to `max_ms`.
    Anything else is Invalid naming `field`."""
    if value is None or value.lower() == _OFF:
        return None
    if value.lower() == _ON:
        return default_ms / 1000
    ms = _whole(value, field, "a number of milliseconds, 'on' or 'off'")
    return min(ms, max_ms) / 1000 or None


def parse_capacity(value: str | None, default: int, cap: int) -> int:
    """Absent → `default`; a whole number ≥ 1 → that, up to `cap`; else Invalid."""
    if value is None:
        return min(default, cap)
    return min(_whole(value, "capacity", "a whole number of events, at least 1", least=1), cap)


def _whole(value: str, field: str, expected: str, least: int = 0) -> int:
    """`value` as a whole decimal number ≥ `least` (ASCII digits only), or Invalid."""
    if not (value.isascii() and value.isdigit() and len(value) <= 12) or int(value) < least:
        raise Invalid(f"{field} {value[:40]!r} is not {expected}", field=field, fields=[field])
    return int(value)


def parse_format(value: str | None, datastar_request: bool) -> str:
    """The feed's format: `json` or `datastar`; absent or empty → `datastar` for a Datastar request
    (`Datastar-Request` header), else `json`; anything else is Invalid (422) naming `format`."""
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
    capacity: str | None,
    debounce_ms: str | None,
    batch_ms: str | None,
    format: str | None,
    datastar_request: bool,
) -> Controls:
    """The controls of one `GET /api/events` from its query strings: defaults and caps from
    `settings` (`sse_capacity`, `sse_max_capacity`, `sse_debounce_ms`, `sse_batch_ms`,
    `sse_max_window_ms`, ...). Invalid (422) naming the first parameter that cannot be understood.
    """
    cap = settings.sse_max_window_ms
    return Controls(
        policy=parse_policy(policy),
        capacity=parse_capacity(capacity, settings.sse_capacity, settings.sse_max_capacity),
        debounce_s=parse_window(debounce_ms, "debounce_ms", settings.sse_debounce_ms, cap),
        debounce_max_wait_s=settings.sse_debounce_max_wait_ms / 1000,
        batch_s=parse_window(batch_ms, "batch_ms", settings.sse_batch_ms, cap),
        batch_max=settings.sse_batch_max,
        format=parse_format(format, datastar_request),
    )

"""Parsing a feed's controls: defaults, caps, and 422s that name the parameter."""

from __future__ import annotations

import pytest

from common.errors import Invalid
from common.settings import GatewaySettings
from gateway.feed import controls
from gateway.feed.policy import Policy, Skip, overflowing
from gateway.feed.sse import parse_last_event_id, resumable
from gateway.feed.window import Item

SETTINGS = GatewaySettings(sse_capacity=256, sse_max_capacity=1000, sse_max_window_ms=5000)


def _parse(**query: object) -> controls.Controls:
    values: dict[str, object] = dict.fromkeys(
        ("policy", "capacity", "debounce_ms", "batch_ms", "format")
    )
    values.update(query)
    return controls.parse(SETTINGS, datastar_request=False, **values)  # type: ignore[arg-type]


def test_absent_controls_take_the_server_defaults() -> None:
    ctl = _parse()
    assert (ctl.policy, ctl.capacity, ctl.debounce_s, ctl.batch_s, ctl.format) == (
        Policy.BLOCK, 256, None, None, "json",
    )  # fmt: skip


def test_on_means_the_default_window_and_numbers_are_capped() -> None:
    ctl = _parse(debounce_ms="on", batch_ms="999999", capacity="50000")
    assert ctl.debounce_s == 0.3 and ctl.batch_s == 5.0 and ctl.capacity == 1000
    assert _parse(debounce_ms="off", batch_ms="0").debounce_s is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"policy": "drop-all"}, "policy"),
        ({"debounce_ms": "1.5"}, "debounce_ms"),
        ({"batch_ms": "-1"}, "batch_ms"),
        ({"format": "xml"}, "format"),
        ({"capacity": "0"}, "capacity"),
        ({"capacity": "abc"}, "capacity"),
        ({"capacity": "1.5"}, "capacity"),
        ({"capacity": "-3"}, "capacity"),
        ({"capacity": "\u0661"}, "capacity"),  # an Arabic-Indic one: a digit, not ASCII
        ({"capacity": ""}, "capacity"),
        ({"debounce_ms": "true"}, "debounce_ms"),
        ({"batch_ms": "true"}, "batch_ms"),
        ({"batch_ms": "yes"}, "batch_ms"),
        ({"debounce_ms": ""}, "debounce_ms"),
        ({"debounce_ms": "9" * 40}, "debounce_ms"),
    ],
)
def test_an_unknown_value_is_invalid_naming_its_parameter(
    query: dict[str, str], field: str
) -> None:
    with pytest.raises(Invalid) as caught:
        _parse(**query)
    assert caught.value.detail["field"] == field
    assert caught.value.detail["fields"] == [field]


def test_a_datastar_request_header_picks_the_datastar_format() -> None:
    assert controls.parse_format(None, datastar_request=True) == "datastar"
    assert controls.parse_format("json", datastar_request=True) == "json"


def test_only_the_dropping_policies_skip_a_backlog_over_capacity() -> None:
    assert overflowing(Policy.DROP_OLDEST, 257, 256) and overflowing(Policy.DROP_NEWEST, 300, 256)
    assert not overflowing(Policy.DROP_NEWEST, 256, 256)
    assert not overflowing(Policy.BLOCK, 10**6, 256)
    assert not overflowing(Policy.UNBOUNDED, 10**6, 256)


def test_a_drop_newest_notice_carries_the_last_skipped_sequence_as_its_id() -> None:
    skip = Skip(Policy.DROP_NEWEST)
    skip.take([Item(seq, "k", "set", b"{}") for seq in range(5, 9)])
    assert skip.dropped() == 4 and skip.kept() == []
    assert skip.notice().startswith(b"event: lag\nid: 8\ndata: ")


@pytest.mark.parametrize(
    ("header", "first", "last", "expected"),
    [
        ("0", 1, 10, True),  # from the beginning
        ("10", 1, 10, True),  # caught up
        ("49", 50, 80, True),  # right before the first event still stored
        ("5", 50, 80, False),  # stale: events after it are gone
        ("81", 50, 80, False),  # future: ahead of the stream
        ("abc", 1, 10, False),  # malformed
        ("-3", 1, 10, False),
        ("0", 0, 0, True),  # an empty stream
    ],
)
def test_only_a_position_inside_the_stream_is_resumable(
    header: str, first: int, last: int, expected: bool
) -> None:
    position = parse_last_event_id(header)
    assert position is not None
    assert resumable(position, first, last) is expected

"""SSE framing against the WHATWG parsing rules: every field of every frame round-trips.

Two parsers read what `gateway.feed.wire` writes: `tests/support/whatwg_sse.py` (the standard's
algorithm, line by line) and httpx-sse's decoder (a maintained client; it ends lines at
CR, LF and CR LF too), both fed in arbitrary pieces.
"""

from __future__ import annotations

import re

import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import given
from hypothesis import strategies as st

from common.envelope import new_envelope
from gateway.dashboard import datastar
from gateway.feed.wire import EVENT_TOKEN, comment, fields, frame, retry
from tests.support.whatwg_sse import parse

# any text, with the line breaks and look-alikes an attacker would try mixed in
TRICKY = st.sampled_from(["\r", "\n", "\r\n", "\n\r", "\u2028", "\u2029", "\x85", "\0", ":", " "])
TEXT = st.lists(st.text() | TRICKY, max_size=8).map("".join)
EVENTS = st.from_regex(EVENT_TOKEN, fullmatch=True)
IDS = st.integers(min_value=0, max_value=2**63)
CUTS = st.lists(st.integers(min_value=1, max_value=400), max_size=6)


def _as_sse(text: str) -> str:
    """What SSE delivers of data: every CR LF and lone CR arrives as LF."""
    return re.sub(r"\r\n|\r", "\n", text)


def _httpx_sse(raw: bytes, cuts: list[int]) -> list[tuple[str, str, str]]:
    text, lines, decoder, out = raw.decode(), SSELineDecoder(), SSEDecoder(), []
    start = 0
    for cut in [*sorted({c for c in cuts if 0 < c < len(text)}), len(text)]:
        for line in lines.decode(text[start:cut]):
            sse = decoder.decode(line)
            if sse is not None:
                out.append((sse.event, sse.data, sse.id))
        start = cut
    return out


@given(data=TEXT.filter(bool), event=EVENTS | st.none(), id=IDS | st.none(), cuts=CUTS)
def test_every_field_of_a_frame_round_trips_through_a_whatwg_parser(
    data: str, event: str | None, id: int | None, cuts: list[int]
) -> None:
    raw = frame(data, event=event, id=id)
    parsed = parse(raw, cuts)
    assert len(parsed.events) == 1
    got = parsed.events[0]
    assert (got.type, got.data) == (event or "message", _as_sse(data))
    assert got.last_event_id == ("" if id is None else str(id))
    assert _httpx_sse(raw, cuts) == [(event or "message", _as_sse(data), got.last_event_id)]


@given(frames=st.lists(st.tuples(TEXT.filter(bool), IDS), min_size=1, max_size=5), cuts=CUTS)
def test_frames_written_back_to_back_stay_apart_whatever_their_data(
    frames: list[tuple[str, int]], cuts: list[int]
) -> None:
    raw = retry(1000) + comment("hello") + b"".join(frame(d, "x", i) for d, i in frames)
    parsed = parse(raw, cuts)
    assert [(e.data, e.last_event_id) for e in parsed.events] == [
        (_as_sse(d), str(i)) for d, i in frames
    ]
    assert parsed.retries == [1000]


@given(text=TEXT, cuts=CUTS)
def test_a_comment_never_becomes_a_field_whatever_its_text(text: str, cuts: list[int]) -> None:
    parsed = parse(comment(text) + frame("after", id=1), cuts)
    assert [(e.data, e.last_event_id) for e in parsed.events] == [("after", "1")]
    assert parsed.comments == _as_sse(text).split("\n")


@given(elements=TEXT.filter(bool), selector=st.text().filter(lambda s: not re.search("[\r\n]", s)))
def test_every_datastar_data_line_keeps_its_key_and_elements_round_trip(
    elements: str, selector: str
) -> None:
    raw = fields([("selector", selector), ("elements", elements)], "datastar-patch-elements", 5)
    (event,) = parse(raw).events
    lines = event.data.split("\n")
    assert lines[0] == f"selector {selector}"
    assert all(line.startswith("elements ") for line in lines[1:])
    assert "\n".join(line.removeprefix("elements ") for line in lines[1:]) == _as_sse(elements)


@pytest.mark.parametrize(
    "event", ["", "a\nb", "a\rb", "todo\r\n", "a b", "x:y", "é", "-x", "a" * 129, "a\0"]
)
def test_an_event_type_that_is_not_a_token_is_refused_before_a_byte_is_written(event: str) -> None:
    with pytest.raises(ValueError, match="event type"):
        frame("{}", event=event)


@pytest.mark.parametrize("key, value", [("selector", "#a\n#b"), ("mode", "inner\rx"), ("x y", "")])
def test_a_single_line_datastar_field_with_a_line_break_is_refused(key: str, value: str) -> None:
    with pytest.raises(ValueError):
        fields([(key, value)])


def test_negative_ids_and_retries_are_refused() -> None:
    with pytest.raises(ValueError):
        frame("x", id=-1)
    with pytest.raises(ValueError):
        retry(-5)


@given(text=TEXT.filter(lambda t: t.strip()))
def test_a_rendered_todo_keeps_every_line_keyed_and_its_cr_as_a_character_reference(
    text: str,
) -> None:
    event = new_envelope(
        "todo_list",
        "l",
        1,
        "todo_added",
        {"todo_id": "t", "text": text},
        schema=2,
        occurred_at="2026-01-01T00:00:00Z",
        event_id="e",
        command_id="c",
    )
    parsed = parse(datastar.render(3, event))
    assert [e.type for e in parsed.events][-1] == "datastar-patch-signals"
    for message in parsed.events:
        for line in message.data.split("\n"):
            assert line.split(" ", 1)[0] in ("mode", "selector", "elements", "signals"), line
    first = parsed.events[0].data.split("\n")
    html = "\n".join(line.removeprefix("elements ") for line in first[2:])
    assert "\r" not in html
    assert html.count("&#13;") == text.count("\r")
    assert parsed.last_event_id == "3"

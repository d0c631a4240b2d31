"""The feed on the wire, over real processes: line breaks in any text, topics that overlap,
and the first frame's position (issue 12, items 1, 4 and 5)."""

from __future__ import annotations

import uuid
from html import escape

import httpx
import pytest
from nats.aio.client import Client

from common.settings import NatsSettings
from gateway.feed.topics import Topic, consumer_name
from tests.support.feeds import Reader, feed, publish, todo
from tests.support.gateways import Http, Start
from tests.support.stack import Stack
from tests.support.waiting import eventually
from tests.support.whatwg_sse import parse

pytestmark = pytest.mark.e2e

# A bare CR, LF, CR LF, look-alikes SSE does not end lines at, NUL, and forged SSE syntax.
TEXTS = [
    "one\rtwo",
    "three\nfour",
    "five\r\nsix",
    "line\u2028sep\u2029para\x85nel",
    "nul\0inside",
    "a\r\rb\n\nc",
    "data: forged\nevent: lag\nid: 999",
    "<b>&amp;</b> \r",
]


def _keyed(data: str) -> list[str]:
    """The Datastar `key value` lines of one message; fails on a line without its key."""
    lines = data.split("\n")
    for line in lines:
        assert line.split(" ", 1)[0] in ("mode", "selector", "elements", "signals"), lines
    return lines


def _html(text: str) -> str:
    """How the gateway renders a text: escaped, a CR as `&#13;`, an LF kept (the HTML
    parser treats both as the same whitespace; `&#13;` keeps the CR in the DOM)."""
    return escape(text.strip(), quote=True).replace("\r", "&#13;")


async def test_texts_with_line_breaks_reach_both_formats_whole_and_every_line_keeps_its_field(
    stack: Stack,
) -> None:
    list_id = f"l{uuid.uuid4().hex[:8]}"
    async with (
        httpx.AsyncClient(base_url=stack.url, timeout=10) as client,
        feed(client, topics=f"todo_list:{list_id}", last_event_id="0") as plain,
        feed(client, topics=f"todo_list:{list_id}", format="datastar", last_event_id="0") as ds,
    ):
        for n, text in enumerate(TEXTS):
            stack.command(list_id, "add_todo", todo_id=f"t{n}", text=text)
        events = await plain.events(len(TEXTS))
        assert [m.data["payload"]["text"] for m in events] == [t.strip() for t in TEXTS]
        appended = [await _datastar_append(ds) for _ in TEXTS]
    assert appended == [_html(t) for t in TEXTS]
    # An unresumable id: the whole list comes back as a snapshot, every todo in it whole.
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        params = {"topics": f"todo_list:{list_id}", "format": "datastar", "last_event_id": "x"}
        async with client.stream("GET", "/api/events", params=params) as response:
            raw = b""
            async for chunk in response.aiter_bytes():
                raw += chunk
                if b"datastar-patch-signals" in raw and raw.endswith(b"\n\n"):
                    break
    snapshot = parse(raw).events
    inner = next(e for e in snapshot if e.type == "datastar-patch-elements")
    html = "\n".join(line.removeprefix("elements ") for line in _keyed(inner.data)[2:])
    for n, text in enumerate(TEXTS):
        assert f'id="text-t{n}">{_html(text)}</span>' in html
    assert html.count('class="delete"') == len(TEXTS)  # no todo lost its buttons


async def _datastar_append(reader: Reader) -> str:
    """The `elements` of the next todo appended to its list, its text span's content."""
    while True:
        message = await reader.next()
        if message.event != "datastar-patch-elements":
            continue
        lines = _keyed(message.data)
        if lines[0] == "mode append":
            html = "\n".join(line.removeprefix("elements ") for line in lines[2:])
            return html.split('class="text" id="text-', 1)[1].split(">", 1)[1].split("</span>")[0]


@pytest.mark.parametrize(
    "topics, expected",
    [
        ("todo_list,todo_list:groceries", ["todo_list"]),
        ("todo_list:groceries,todo_list", ["todo_list"]),
        ("todo_list:a,todo_list:a,todo_list:a", ["todo_list:a"]),
        (" todo_list:b , todo_list:a ", ["todo_list:a", "todo_list:b"]),
        ("user_profile:u,todo_list:x,user_profile,todo_list:x", ["todo_list:x", "user_profile"]),
        ("todo_list,user_profile,todo_list,user_profile:z", ["todo_list", "user_profile"]),
    ],
)
async def test_overlapping_and_repeated_topics_are_normalised_into_one_stable_consumer(
    nc: Client, start_gateway: Start, http: Http, topics: str, expected: list[str]
) -> None:
    _, base = start_gateway()
    client = http(base)
    async with feed(client, topics=topics, client_id="c1") as one:
        hello = (await one.until("connected"))[-1].data
    assert hello["topics"] == expected
    shuffled = ",".join(reversed(topics.split(",")))
    async with feed(client, topics=shuffled, client_id="c1") as two:
        assert (await two.until("connected"))[-1].data["consumer"] == hello["consumer"]


@pytest.mark.parametrize(
    "topics", ["todo_list,", "nope", ",", "todo_list:a b", ":x", "todo_list:a:b", "TODO_LIST"]
)
async def test_a_malformed_topic_is_a_422_naming_topics_never_a_retryable_503(
    nc: Client, start_gateway: Start, http: Http, topics: str
) -> None:
    _, base = start_gateway()
    reply = await http(base).get("/api/events", params={"topics": topics})
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "topics"
    assert "Retry-After" not in reply.headers


async def test_a_client_that_saw_only_connected_gets_what_was_appended_while_it_was_away(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    """EventSource without client_id on a quiet topic: connect, drop, an event, reconnect."""
    _, base = start_gateway()
    client, list_id = http(base), f"q{uuid.uuid4().hex[:8]}"
    await publish(nc, nats_settings, [todo("elsewhere", 1)])  # the stream is not empty
    async with feed(client, topics=f"todo_list:{list_id}") as first:
        connected = await first.next()
        while connected.event != "connected":
            connected = await first.next()
    assert connected.id is not None  # the position the feed started after
    (seq,) = await publish(nc, nats_settings, [todo(list_id, 1)])
    headers = {"Last-Event-ID": str(connected.id)}
    async with feed(client, headers, topics=f"todo_list:{list_id}") as again:
        hello = await again.until("connected")
        assert hello[-1].id == connected.id
        (got,) = await again.events(1)
        assert (got.event, got.id) == ("todo_added", seq)
        (later,) = await publish(nc, nats_settings, [todo(list_id, 2)])
        (next_one,) = await again.events(1)
        assert next_one.id == later  # the event came once, and nothing came twice


async def test_a_client_id_feed_reconnecting_without_an_id_continues_from_its_consumer(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway()
    client, list_id = http(base), f"k{uuid.uuid4().hex[:8]}"
    async with feed(client, topics=f"todo_list:{list_id}", client_id="k1") as first:
        position = (await first.until("connected"))[-1].id
        (seq,) = await publish(nc, nats_settings, [todo(list_id, 1)])
        assert [m.id for m in await first.events(1)] == [seq]

    async def acked() -> int:
        name = consumer_name("k1", (Topic("todo_list", list_id),))
        info = await nc.jetstream().consumer_info(nats_settings.stream, name)
        return int(info.ack_floor.stream_seq)

    await eventually(acked, lambda floor: floor == seq)
    async with feed(client, topics=f"todo_list:{list_id}", client_id="k1") as again:
        hello = (await again.until("connected"))[-1]
        assert position is not None and hello.id is not None and hello.id >= seq
        (later,) = await publish(nc, nats_settings, [todo(list_id, 2)])
        assert [m.id for m in await again.events(1)] == [later]

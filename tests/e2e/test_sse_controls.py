"""The feed's per-client controls, observed by real SSE clients of a gateway process."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from common.settings import NatsSettings
from tests.support.feeds import feed, make, publish, todo
from tests.support.gateways import Http, Start, metric
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_unknown_control_values_are_422_naming_the_parameter(
    nc: Client, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway()
    client = http(base)
    for params, field in [
        ({"policy": "drop-everything"}, "policy"),
        ({"format": "xml"}, "format"),
        ({"debounce_ms": "soon"}, "debounce_ms"),
        ({"batch_ms": "-5"}, "batch_ms"),
        ({"capacity": "0"}, "capacity"),
        ({"capacity": "abc"}, "capacity"),
        ({"capacity": "1.5"}, "capacity"),
        ({"debounce_ms": "true"}, "debounce_ms"),
        ({"batch_ms": "true"}, "batch_ms"),
        ({"topics": "todo_list:bad id"}, "topics"),
    ]:
        reply = await client.get("/api/events", params=params)
        assert reply.status_code == 422, (params, reply.text)
        body = reply.json()
        assert body.get("field") == field, body


async def test_limits_refuse_with_429_per_client_and_503_per_process(
    nc: Client, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway(sse_max_per_client=1, sse_max_connections=2, sse_max_topics=2)
    client = http(base)
    too_many = await client.get(
        "/api/events", params={"topics": "todo_list:a,todo_list:b,user_profile"}
    )
    assert too_many.status_code == 422 and too_many.json()["field"] == "topics"  # never retried
    async with feed(client, client_id="alice") as first:
        await first.until("connected")
        # another feed of alice (other topics; the same one would take over: test_sse_floors)
        other = {"client_id": "alice", "topics": "todo_list"}
        again = await client.get("/api/events", params=other)
        assert again.status_code == 429, again.text
        assert "alice" in again.json()["message"] and again.headers["Retry-After"]
        async with feed(client, client_id="bob") as second:
            await second.until("connected")
            full = await client.get("/api/events", params={"client_id": "carol"})
            assert full.status_code == 503, full.text
            assert "limit of 2 SSE connections" in full.json()["message"]

    async def opens() -> int:
        async with client.stream("GET", "/api/events", params={"client_id": "alice"}) as reply:
            return reply.status_code

    await eventually(opens, lambda status: status == 200)  # slots are given back on close


async def test_batching_sends_one_message_per_window_with_the_last_sequence_as_id(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway()
    async with feed(http(base), topics="todo_list", batch_ms="200") as reader:
        await reader.until("connected")
        sequences = await publish(nc, nats_settings, [todo("a", n) for n in range(1, 31)])
        got: list[int] = []
        while len(got) < 30:
            message = await reader.next()
            assert message.event == "batch"
            assert message.id == message.data[-1]["sequence"]
            got += [entry["sequence"] for entry in message.data]
        assert got == sequences
        assert len(got) > 1


async def test_debounce_sends_the_last_event_per_aggregate_and_every_critical_event(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway()
    async with feed(http(base), debounce_ms="300") as reader:
        await reader.until("connected")
        registered = {"name": "U", "email": "u@example.com"}
        profile = [
            ("user_profile.u1", make("user_profile", "u1", 1, "user_registered", registered)),
            ("user_profile.u1", make("user_profile", "u1", 2, "user_deactivated", {})),
        ]
        events = [todo("a", 1), todo("a", 2), todo("b", 1), *profile, todo("a", 3), todo("b", 2)]
        sequences = await publish(nc, nats_settings, events)
        got = await reader.events(5)
        # the critical deactivation flushes the group before it, itself last (superseding
        # the registration); the window then sends the last todo of each list
        assert [m.id for m in got] == [sequences[i] for i in (1, 2, 4, 5, 6)]
        kinds = ["todo_added", "todo_added", "user_deactivated", "todo_added", "todo_added"]
        assert [m.event for m in got] == kinds


async def _stall_then_read(
    nc: Client, nats_settings: NatsSettings, base: str, http: Http, policy: str, count: int
) -> tuple[list[int], list]:
    """A client that stops reading while `count` events are appended, then reads again."""
    async with feed(http(base), topics="todo_list", policy=policy, capacity="16") as reader:
        await reader.until("connected")
        events = [todo(f"l{n % 5}", n // 5 + 1, "y" * 200) for n in range(count)]
        sequences = await publish(nc, nats_settings, events)
        seen = []
        while not seen or seen[-1].id != sequences[-1]:
            seen.append(await reader.next())
        return sequences, seen


async def test_block_policy_delivers_every_event_after_a_stall(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway(sse_send_buffer_bytes=4096)
    sequences, seen = await _stall_then_read(nc, nats_settings, base, http, "block", 3000)
    assert [m.id for m in seen] == sequences
    assert {m.event for m in seen} == {"todo_added"}


async def test_drop_oldest_skips_to_the_latest_event_per_aggregate_with_a_lag_notice(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway(sse_send_buffer_bytes=4096)
    sequences, seen = await _stall_then_read(nc, nats_settings, base, http, "drop-oldest", 3000)
    notices = [m for m in seen if m.event == "lag"]
    assert notices, "no lag notice"
    events = [m for m in seen if m.event == "todo_added"]
    assert sum(n.data["dropped"] for n in notices) + len(events) == len(sequences)
    ids = [m.id for m in events]
    assert ids == sorted(ids) and ids[-1] == sequences[-1]
    after = seen[seen.index(notices[-1]) + 1 :]
    assert notices[-1].data["policy"] == "drop-oldest" and notices[-1].data["kept"] == len(after)
    assert len({m.data["aggregate_id"] for m in after}) == len(after)  # latest per aggregate


async def test_drop_newest_drops_the_backlog_and_says_what_was_dropped(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway(sse_send_buffer_bytes=4096)
    async with feed(http(base), topics="todo_list", policy="drop-newest", capacity="16") as reader:
        await reader.until("connected")
        first = await publish(nc, nats_settings, [todo("a", n, "y" * 200) for n in range(1, 3001)])
        seen = await reader.until("lag")
        notice = seen[-1]
        events = [m for m in seen if m.event == "todo_added"]
        assert [m.id for m in events] == first[: len(events)]  # the oldest, in order
        assert notice.data["policy"] == "drop-newest" and notice.id == first[-1]
        assert notice.data["first_sequence"] == first[len(events)]
        assert len(events) + notice.data["dropped"] == len(first)
        later = await publish(nc, nats_settings, [todo("a", 3001)])
        assert (await reader.next()).id == later[0]  # live again after the skip


async def test_unbounded_policy_closes_with_a_notice_past_its_safety_cap(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway(sse_send_buffer_bytes=4096, sse_unbounded_cap=200)
    slow = http(base, receive_buffer=16384)
    async with feed(slow, topics="todo_list", policy="unbounded", capacity="16") as reader:
        await reader.until("connected")
        await publish(nc, nats_settings, [todo("a", n, "y" * 200) for n in range(1, 3001)])
        drops = 'rate_limit_drops_total{policy="unbounded"}'
        await eventually(lambda: metric(http(base), drops), lambda n: n > 0)  # still not reading
        seen = await reader.until("lag")
        assert seen[-1].data["policy"] == "unbounded" and seen[-1].data["cap"] == 200
        assert [m.event for m in seen[:-1]] == ["todo_added"] * (len(seen) - 1)
        with pytest.raises(StopAsyncIteration):
            await reader.next()  # the gateway ended the stream


async def test_an_idle_feed_gets_keep_alive_comments_and_a_retry_hint(
    nc: Client, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway(sse_keepalive_s=0.2, sse_retry_ms=1500)
    seen = b""
    async with http(base).stream("GET", "/api/events") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["cache-control"] == "no-cache"
        async for chunk in reply.aiter_bytes():
            seen += chunk
            if seen.count(b": keep-alive\n\n") >= 2:
                break
    assert seen.startswith(b"retry: 1500\n\n")


async def test_datastar_format_is_chosen_by_parameter_or_header(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway()
    client = http(base)
    async with (
        feed(client, topics="todo_list", format="datastar") as by_parameter,
        feed(client, {"Datastar-Request": "true"}, topics="todo_list", client_id="d") as by_header,
    ):
        await by_parameter.until("connected")
        await by_header.until("connected")
        (sequence,) = await publish(nc, nats_settings, [todo("a", 1)])
        for reader in (by_parameter, by_header):
            messages = [await reader.next()]
            while messages[-1].event != "datastar-patch-signals":  # the last patch has the id
                messages.append(await reader.next())
            assert {m.event for m in messages} <= {
                "datastar-patch-elements",
                "datastar-patch-signals",
            }
            assert messages[-1].id == sequence


async def test_a_missing_event_stream_is_a_503_not_a_500(start_gateway: Start, http: Http) -> None:
    _, base = start_gateway()  # no `nc` fixture: this test's stream was never created
    reply = await http(base).get("/api/events", params={"topics": "todo_list"})
    assert reply.status_code == 503, reply.text
    assert reply.headers["Retry-After"] == "1" and "retry" in reply.json()["message"]


async def test_a_returning_client_without_last_event_id_continues_after_what_it_was_sent(
    nc: Client, nats_settings: NatsSettings, start_gateway: Start, http: Http
) -> None:
    _, base = start_gateway()
    client = http(base)
    first = await publish(nc, nats_settings, [todo("a", n) for n in (1, 2, 3)])
    async with feed(client, topics="todo_list", client_id="back", last_event_id="0") as reader:
        assert [m.id for m in await reader.events(3)] == first
    later = await publish(nc, nats_settings, [todo("a", n) for n in (4, 5)])

    async def resumed() -> list[int | None]:
        async with feed(client, topics="todo_list", client_id="back") as again:
            return [m.id for m in await again.events(2, timeout=2)]

    assert await eventually(resumed, lambda ids: ids == later)

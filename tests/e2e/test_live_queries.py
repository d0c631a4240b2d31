"""`GET /api/live` over real processes: answers that follow commands, resume, sharing,
table-precise re-evaluation, grants, a slow subscriber, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from ironstar.natsserver import NatsServer
from tests.support import chunked
from tests.support.feeds import feed
from tests.support.gateways import metric
from tests.support.secured import SecuredStack, bearer, running, token, unique
from tests.support.waiting import eventually
from tests.support.whatwg_sse import parse

pytestmark = pytest.mark.e2e
ADMIN = bearer("admin")
SEND_BUFFER = 16_384  # the gateway's per-connection kernel send buffer: a slow reader shows
PER_PRINCIPAL_QUERIES = 24  # distinct live queries one principal may start
DEADLINE_S = 5.0  # the gateway's query_timeout_s: a first answer's deadline from arrival


@pytest.fixture(scope="module")
def stack(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredStack]:
    with running(
        nats_server,
        tmp_path_factory.mktemp("live"),
        IRONSTAR_LIMIT_REQUESTS_PER_S="1000",
        IRONSTAR_LIMIT_BURST="1000",
        IRONSTAR_GATEWAY_SSE_SEND_BUFFER_BYTES=str(SEND_BUFFER),
        IRONSTAR_GATEWAY_LIVE_MAX_QUERIES_PER_PRINCIPAL=str(PER_PRINCIPAL_QUERIES),
    ) as running_stack:
        yield running_stack


@pytest.fixture
async def http(stack: SecuredStack) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(10, read=30)
    async with httpx.AsyncClient(base_url=stack.base, timeout=timeout, headers=ADMIN) as client:
        yield client


@dataclass
class Follower:
    """One live feed read in the background: its frames as (event, id, data)."""

    frames: list[tuple[str, int | None, Any]] = field(default_factory=list)
    status: int = 0
    task: asyncio.Task[None] | None = None

    def results(self) -> list[tuple[int, Any]]:
        return [(i, d) for e, i, d in self.frames if e == "result" and i is not None]

    def last(self) -> tuple[int, Any]:
        return self.results()[-1] if self.results() else (-1, None)


async def follow(
    http: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str] | None = None
) -> Follower:
    """Open a feed and read it until cancelled (`stop`); returns once it answered."""
    me = Follower()
    opened = asyncio.get_running_loop().create_future()

    async def read() -> None:
        extra = dict(headers or {})
        async with aconnect_sse(http, "GET", "/api/live", params=params, headers=extra) as sse:
            me.status = sse.response.status_code
            opened.set_result(None)
            if me.status != 200:
                return
            async for event in sse.aiter_sse():
                data = json.loads(event.data) if event.data else None
                me.frames.append((event.event, int(event.id) if event.id else None, data))

    me.task = asyncio.create_task(read())
    await asyncio.wait({opened, me.task}, return_when=asyncio.FIRST_COMPLETED)
    if me.task.done():
        me.task.result()
    return me


async def stop(*followers: Follower) -> None:
    for one in followers:
        if one.task is not None:
            one.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await one.task


async def add(http: httpx.AsyncClient, list_id: str, text: str = "a todo") -> int:
    body = {"type": "add_todo", "payload": {"todo_id": unique("t"), "text": text}}
    reply = await http.post(f"/api/commands/todo_list/{list_id}", json=body)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["sequence"])


async def reaches(one: Follower, sequence: int, timeout: float = 10) -> tuple[int, Any]:
    async def probe() -> tuple[int, Any]:
        return one.last()

    return await eventually(probe, lambda last: last[0] >= sequence, timeout)


def get_list(list_id: str, **extra: str) -> dict[str, str]:
    return {"query": "todo_lists.get", "list_id": list_id, **extra}


async def test_a_result_comes_at_once_then_each_time_a_command_changes_it(
    http: httpx.AsyncClient,
) -> None:
    list_id = unique("list")
    one = await follow(http, get_list(list_id))
    assert one.status == 200
    first = await reaches(one, 0)
    assert first[1]["result"]["items"] == [] and first[1]["sequence"] == first[0]
    sequences = [await add(http, list_id, f"todo {n}") for n in range(3)]
    _, answer = await reaches(one, sequences[-1])
    assert [i["text"] for i in answer["result"]["items"]] == ["todo 0", "todo 1", "todo 2"]
    ids = [i for i, _ in one.results()]
    assert ids == sorted(set(ids)), "answers only go forward, each one new"
    await stop(one)


async def test_the_datastar_format_patches_the_named_signal_with_each_answer(
    http: httpx.AsyncClient,
) -> None:
    list_id = unique("list")
    sequence = await add(http, list_id, "patched")
    params = {**get_list(list_id), "format": "datastar", "signal": "todos"}
    params["min_seq"] = str(sequence)  # read-your-writes: the first answer holds the todo
    async with aconnect_sse(http, "GET", "/api/live", params=params) as sse:
        event = await anext(e async for e in sse.aiter_sse() if e.data)  # after `retry:`
    assert event.event == "datastar-patch-signals" and int(event.id) >= sequence
    key, _, signals = event.data.partition(" ")
    answer = json.loads(signals)["todos"]
    assert key == "signals" and answer["sequence"] == int(event.id)
    assert [i["text"] for i in answer["result"]["items"]] == ["patched"]
    assert "truncated" in answer and answer["truncated"] is None  # a merge patch clears it


async def test_last_event_id_resumes_with_an_answer_as_of_it_or_later(
    http: httpx.AsyncClient,
) -> None:
    list_id = unique("list")
    sequence = await add(http, list_id, "before the reconnect")
    resumed = await follow(http, get_list(list_id), {"Last-Event-ID": str(sequence)})
    _, answer = await reaches(resumed, sequence)
    assert resumed.results()[0][0] >= sequence, "never an answer older than the client's"
    assert [i["text"] for i in answer["result"]["items"]] == ["before the reconnect"]
    # An id from another stream (ahead of this one) gets the answer as it is now.
    ahead = await follow(http, get_list(list_id), {"Last-Event-ID": str(sequence + 10**6)})
    assert (await reaches(ahead, sequence))[0] < sequence + 10**6
    await stop(resumed, ahead)


async def test_identical_subscribers_share_one_evaluation_per_batch(
    http: httpx.AsyncClient,
) -> None:
    list_id = unique("list")
    many = await asyncio.gather(*(follow(http, get_list(list_id)) for _ in range(8)))
    await asyncio.gather(*(reaches(one, 0) for one in many))
    assert await metric(http, "live_queries") == 1
    assert await metric(http, "live_subscriptions") == 8
    before = await metric(http, "live_evaluations_total")
    commands = 4
    for n in range(commands):
        sequence = await add(http, list_id, f"shared {n}")
        await asyncio.gather(*(reaches(one, sequence) for one in many))
    evaluations = await metric(http, "live_evaluations_total") - before
    assert 1 <= evaluations <= commands, f"{evaluations} evaluations for {commands} batches"
    await stop(*many)
    await eventually(lambda: metric(http, "live_subscriptions"), lambda n: n == 0)
    assert await metric(http, "live_queries") == 0


async def test_distinct_keys_due_after_a_batch_cost_one_projector_request(
    http: httpx.AsyncClient,
) -> None:
    distinct, commands = 6, 3
    lists = [unique("list") for _ in range(distinct)]
    feeds = [await follow(http, get_list(one, min_interval_ms="50")) for one in lists]
    await asyncio.gather(*(reaches(one, 0) for one in feeds))
    rounds, evaluations = "live_rounds_total", 'live_evaluations_total{query="todo_lists.get"}'
    before = (await metric(http, rounds), await metric(http, evaluations))
    for n in range(commands):  # each batch changes `todos`: every key is due after it
        sequence = await add(http, lists[n], f"round {n}")
        await reaches(feeds[n], sequence)
    ran = await eventually(
        lambda: metric(http, evaluations), lambda v: v - before[1] >= distinct * commands
    )
    sent = await metric(http, rounds) - before[0]
    assert ran - before[1] == distinct * commands, "each key once per batch"
    assert 1 <= sent <= commands + 1, f"{sent} projector requests for {commands} batches"
    await stop(*feeds)


async def test_a_batch_that_touches_other_tables_re_runs_nothing(http: httpx.AsyncClient) -> None:
    list_id, user_id = unique("list"), unique("user")
    todos = await follow(http, get_list(list_id, min_interval_ms="50"))
    await reaches(todos, 0)
    users = await follow(http, {"query": "user_profiles.list", "min_interval_ms": "50"})
    await reaches(users, 0)
    runs = 'live_evaluations_total{query="todo_lists.get"}'
    before = await metric(http, runs)
    body = {"type": "register_user", "payload": {"name": "Ada", "email": "ada@example.org"}}
    reply = await http.post(f"/api/commands/user_profile/{user_id}", json=body)
    await reaches(users, reply.json()["sequence"])
    # Then a batch that does change `todos`: the todos' query runs once, for it alone (had
    # the users' batch run it too, that run was due 50 ms after it, long before this one).
    sequence = await add(http, list_id, "after the user")
    await reaches(todos, sequence)
    assert await metric(http, runs) - before == 1, "the users' batch ran the todos' query"
    await stop(todos, users)


async def test_grants_are_checked_per_subscriber_when_it_subscribes(
    http: httpx.AsyncClient,
) -> None:
    mine, other, secret = unique("list"), unique("list"), unique("secret")
    await add(http, other, secret)
    someone = await follow(http, get_list(other))  # the other list's query is running
    await reaches(someone, 0)
    own = bearer(f"read:todo_list:{mine}", subject=unique("reader"))
    allowed = await follow(http, get_list(mine), own)
    assert allowed.status == 200
    await reaches(allowed, 0)
    for params, headers, status in (
        (get_list(other), own, 403),  # another list, though its query runs for someone
        ({"sql": "SELECT count(*) FROM todos"}, own, 403),  # SQL needs `sql`
        (get_list(mine), {"Authorization": ""}, 401),
    ):
        reply = await http.get("/api/live", params=params, headers=headers)
        assert reply.status_code == status, reply.text
        assert secret not in reply.text and "result" not in reply.text
    await stop(allowed, someone)


async def test_a_token_that_expires_ends_the_feed(http: httpx.AsyncClient) -> None:
    short = {"Authorization": f"Bearer {token('read:*', ttl_s=2)}"}
    one = await follow(http, {"query": "analytics.totals"}, short)
    assert one.status == 200
    assert one.task is not None
    await asyncio.wait_for(one.task, 10)  # the server ends it
    assert [e for e, _, _ in one.frames][-1] == "expired"


async def test_an_event_feed_ends_when_its_token_expires_as_a_live_feed_does(
    http: httpx.AsyncClient,
) -> None:
    """attack15 F4: `/api/events` too: at the token's `exp` an `event: expired`, then the
    stream ends (the client resumes by id with a new token)."""
    list_id = unique("l")
    short = {"Authorization": f"Bearer {token('read:todo_list', subject=unique('s'), ttl_s=2)}"}
    async with feed(http, short, topics=f"todo_list:{list_id}") as reader:
        await reader.until("connected")
        await add(http, list_id, "before")
        assert [m.data["payload"]["text"] for m in await reader.events(1)] == ["before"]
        ended = await reader.until("expired", timeout=10)
        assert ended[-1].data == {"reason": "the token expired; sign in again"}
        with pytest.raises(StopAsyncIteration):  # the stream is over: nothing after it
            await reader.next(timeout=5)


async def test_a_token_past_its_exp_within_the_leeway_opens_no_feed(
    http: httpx.AsyncClient,
) -> None:
    """verify5: accepted within the clock-skew leeway, a feed would end at once and an
    EventSource reconnect in a loop: a 401 instead, for event feeds and live queries."""
    late = {"Authorization": f"Bearer {token('read:*', subject=unique('late'), ttl_s=-5)}"}
    assert (await http.get("/api/read/stream/totals", headers=late)).status_code == 200
    for path, params in (
        ("/api/events", {"topics": "todo_list"}),
        ("/api/live", {"query": "stream.totals"}),
    ):
        reply = await http.get(path, params=params, headers=late)
        assert reply.status_code == 401 and "expired" in reply.json()["message"], reply.text


async def test_a_slow_subscriber_gets_only_the_latest_answer(
    stack: SecuredStack, http: httpx.AsyncClient
) -> None:
    list_id = unique("list")
    # Answers of ~200 KB: a reader that does not read fills the socket with one or two.
    text = (
        f"SELECT repeat('x', 200000) AS pad, count(*) AS n FROM todos WHERE list_id = '{list_id}'"
    )
    port = int(stack.base.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    query = httpx.QueryParams({"sql": text})
    sock.sendall(f"GET /api/live?{query} HTTP/1.1\r\nHost: x\r\n{_header(ADMIN)}\r\n\r\n".encode())
    sequences = [await add(http, list_id) for _ in range(8)]
    seen = await http.post("/api/sql", json={"sql": text}, params={"min_seq": sequences[-1]})
    assert seen.json()["result"]["rows"][0][1] == 8
    try:
        frames = await asyncio.to_thread(_read_until, sock, b",8]]", 30.0)
    finally:
        sock.close()
    counts = [int(f.split(b"\n")[1][4:]) for f in frames if f.startswith(b"event: result")]
    assert counts == sorted(counts) and counts[-1] >= sequences[-1]
    assert len(counts) < 1 + len(sequences), f"a slow reader got every answer: {counts}"


def _header(headers: dict[str, str]) -> str:
    return "\r\n".join(f"{k}: {v}" for k, v in headers.items())


def _read_until(sock: socket.socket, marker: bytes, timeout: float) -> list[bytes]:
    """Read slowly until a frame holds `marker`; the frames read (id lines at [1])."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        assert chunk, f"the feed ended: {data[-300:]!r}"
        data += chunk
        frames = data.split(b"\n\n")
        if any(marker in f.replace(b" ", b"") for f in frames[:-1]):
            return [f[f.find(b"event:") :] for f in frames if b"event:" in f]
    raise AssertionError(f"no frame with {marker!r} within {timeout} s: {data[-300:]!r}")


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"query": "todo_lists.nope"}, 404, "no query"),
        ({"query": "nowhere.get"}, 404, "nowhere"),
        ({"query": "todo_lists"}, 422, "<projection>.<query>"),
        ({"query": "todo_lists.get"}, 422, "list_id"),
        ({"query": "analytics.throughput", "minutes": "many"}, 422, "minutes"),
        ({"query": "todo_lists.get", "list_id": "a b"}, 422, "list_id"),
        ({"sql": "DELETE FROM todos"}, 422, "SELECT"),
        ({"sql": "SELECT * FROM read_csv('/etc/passwd')"}, 422, "read_csv"),
        ({"sql": "SELECT 1", "query": "analytics.totals"}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"query": "analytics.totals", "min_interval_ms": "1"}, 422, "min_interval_ms"),
        ({"query": "analytics.totals", "format": "xml"}, 422, "format"),
        ({"query": "analytics.totals", "min_seq": "-1"}, 422, "min_seq"),
    ],
)
async def test_bad_input_is_a_clear_4xx_before_any_stream(
    http: httpx.AsyncClient, params: dict[str, str], status: int, says: str
) -> None:
    reply = await http.get("/api/live", params=params)
    assert reply.status_code == status, reply.text
    assert says in reply.text


async def test_a_dashboard_live_view_patches_its_element_under_its_query_grant(
    http: httpx.AsyncClient,
) -> None:
    """`/ui/live/<panel>/<view>`: the same feed, each answer one element patch by id."""
    list_id = unique("list")
    sequence = await add(http, list_id, "a chip")
    path = "/ui/live/todos/lists"
    resume = {"Last-Event-ID": str(sequence)}
    async with aconnect_sse(http, "GET", path, headers=resume) as sse:
        event = await anext(e async for e in sse.aiter_sse() if e.data)
    assert event.event == "datastar-patch-elements" and int(event.id) >= sequence
    assert event.data.startswith('elements <ul id="lists"')
    assert f'<a href="/?list={list_id}">{list_id}</a> <small>1 active</small>' in event.data
    async with aconnect_sse(http, "GET", "/ui/live/analytics/totals") as sse:
        event = await anext(e async for e in sse.aiter_sse() if e.data)
    assert '<div id="totals"' in event.data and "<dt>events</dt>" in event.data
    one_list = bearer(f"read:todo_list:{list_id}", subject=unique("reader"))
    for view, headers, status in (
        ("/ui/live/analytics/chart", one_list, 403),  # the chart needs `read:analytics`
        (path, one_list, 403),  # every list's chips: not one list's grant
        (path, {"Authorization": ""}, 401),
        ("/ui/live/todos/nothing", ADMIN, 404),
        ("/ui/live/nothing/lists", ADMIN, 404),
    ):
        reply = await http.get(view, headers=headers)
        assert reply.status_code == status, (view, reply.text)
        assert "elements" not in reply.text  # no answer before the 4xx


def slow_sql(n: int) -> str:
    """A valid SQL live query of ~1 s (one DuckDB thread) that reads `todos`: each
    command runs it again. `n` makes the text (the key) distinct."""
    work = "SELECT count(DISTINCT md5(r.range::VARCHAR)) FROM range(2500000) r"
    return f"SELECT {n} AS feed, ({work}) AS work, (SELECT count(*) FROM todos) AS todos"


async def test_one_principals_slow_sql_feeds_do_not_delay_a_named_live_query(
    http: httpx.AsyncClient,
) -> None:
    hog = bearer("sql", "read:*", subject=unique("hog"))
    slow = await asyncio.gather(*(follow(http, {"sql": slow_sql(n)}, hog) for n in range(8)))
    opened = [one for one in slow if one.status == 200]
    assert opened and {one.status for one in slow} <= {200, 400, 429}
    list_id = unique("list")
    named = await follow(http, get_list(list_id))
    await reaches(named, 0)
    for n in range(4):  # each command re-runs every slow feed, and the named query
        sequence = await add(http, list_id, f"fair {n}")
        started = time.monotonic()
        await reaches(named, sequence, timeout=10)
        took = time.monotonic() - started
        assert took < 1.5, f"the named query answered {took:.1f} s after a commit"
    errors = [d for one in opened for e, _, d in one.frames if e == "error"]
    assert errors == [], "a slow but valid feed got an error for waiting"
    await stop(named, *slow)


async def test_a_subscribe_that_can_only_wait_is_a_429_with_retry_after_by_its_deadline(
    http: httpx.AsyncClient,
) -> None:
    hog = bearer("sql", "read:*", subject=unique("hog"))

    async def subscribe(n: int) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        params = {"sql": slow_sql(100 + n)}
        async with http.stream("GET", "/api/live", params=params, headers=hog) as reply:
            return time.monotonic() - started, reply

    answers = await asyncio.gather(*(subscribe(n) for n in range(14)))
    statuses = sorted(reply.status_code for _, reply in answers)
    assert set(statuses) <= {200, 400, 429} and 200 in statuses and 429 in statuses, statuses
    for took, reply in answers:
        assert took < DEADLINE_S + 2, f"{reply.status_code} after {took:.1f} s"
        if reply.status_code == 429:
            assert int(reply.headers["Retry-After"]) >= 1


async def test_min_seq_ahead_of_the_stream_waits_then_answers_504(
    http: httpx.AsyncClient,
) -> None:
    list_id = unique("list")
    sequence = await add(http, list_id)
    ahead = get_list(list_id, min_seq=str(sequence + 1000))

    async def refused() -> None:
        started = time.monotonic()
        reply = await http.get("/api/live", params=ahead)
        took = time.monotonic() - started
        assert reply.status_code == 504, reply.text
        assert DEADLINE_S - 1 < took < DEADLINE_S + 3, f"504 after {took:.1f} s"

    await refused()  # the first evaluation of its key
    running = await follow(http, get_list(list_id))
    await reaches(running, sequence)
    await refused()  # joining a key already evaluated
    joined = await follow(http, get_list(list_id, min_seq=str(sequence)))
    assert (await reaches(joined, sequence))[0] >= sequence  # one it can reach: answered
    await stop(running, joined)


async def test_a_datastar_request_gets_datastar_frames_unless_it_names_a_format(
    http: httpx.AsyncClient,
) -> None:
    params = {"query": "analytics.totals"}
    for extra, event in (({}, "datastar-patch-signals"), ({"format": "json"}, "result")):
        headers = {"Datastar-Request": "true"}
        async with aconnect_sse(
            http, "GET", "/api/live", params={**params, **extra}, headers=headers
        ) as sse:
            first = await anext(e async for e in sse.aiter_sse() if e.data)
        assert first.event == event


async def test_one_principal_starts_a_bounded_share_of_the_distinct_live_queries(
    http: httpx.AsyncClient,
) -> None:
    me = bearer("read:*", subject=unique("many"))
    lists = [unique("list") for _ in range(PER_PRINCIPAL_QUERIES)]
    mine = await asyncio.gather(*(follow(http, get_list(one), me) for one in lists))
    assert {one.status for one in mine} == {200}
    reply = await http.get("/api/live", params=get_list(unique("list")), headers=me)
    assert reply.status_code == 429 and int(reply.headers["Retry-After"]) >= 1, reply.text
    joined = await follow(http, get_list(lists[0]), me)  # a query it started: no new key
    view = await follow(http, {"query": "analytics.totals"})  # another principal's
    assert (joined.status, view.status) == (200, 200)
    async with aconnect_sse(http, "GET", "/ui/live/analytics/totals", headers=me) as sse:
        assert sse.response.status_code == 200  # the dashboard's views are not counted
    await stop(*mine)
    again = await follow(http, get_list(unique("list")), me)
    assert again.status == 200, "closing its feeds gives its share back"
    await stop(joined, view, again)


async def test_the_others_keep_their_answers_when_the_subscriber_that_started_a_query_leaves(
    http: httpx.AsyncClient,
) -> None:
    sql = f"SELECT '{unique('key')}' AS key, (SELECT count(*) FROM todos) AS todos"
    owner, other = (bearer("sql", "read:*", subject=unique(who)) for who in ("owner", "other"))
    first = await follow(http, {"sql": sql}, owner)  # starts the evaluation: its owner
    second = await follow(http, {"sql": sql}, other)
    await asyncio.gather(reaches(first, 0), reaches(second, 0))
    subscriptions = await metric(http, "live_subscriptions")
    await stop(first)
    await eventually(lambda: metric(http, "live_subscriptions"), lambda n: n < subscriptions)
    list_id = unique("list")
    for n in range(2):
        sequence = await add(http, list_id, f"after the owner left {n}")
        _, answer = await reaches(second, sequence)
    assert answer["result"], answer
    errors = [d for e, _, d in second.frames if e == "error"]
    assert errors == [], errors
    await stop(second)


async def test_feeds_that_differ_only_in_interval_share_one_key_each_at_its_own_pace(
    http: httpx.AsyncClient,
) -> None:
    list_id = unique("list")
    before = await metric(http, "live_queries")
    slow = [await follow(http, get_list(list_id, min_interval_ms=str(2000 + n))) for n in range(6)]
    fast = await follow(http, get_list(list_id, min_interval_ms="50"))
    await asyncio.gather(*(reaches(one, 0) for one in [*slow, fast]))
    assert await metric(http, "live_queries") == before + 1
    await asyncio.sleep(0.1)  # the slow feeds' interval opened by their first answer: time
    sequences = [await add(http, list_id, f"paced {n}") for n in range(3)]
    await reaches(fast, sequences[-1])
    taken = len(slow[0].results())
    assert taken <= 2, f"a 2 s feed wrote {taken} answers within 2 s"
    await reaches(slow[0], sequences[-1])  # when its own interval opens
    await stop(*slow, fast)


async def test_a_resume_or_min_seq_on_a_key_with_a_long_interval_is_answered_at_once(
    http: httpx.AsyncClient,
) -> None:
    list_id = unique("list")
    minute = get_list(list_id, min_interval_ms="60000")
    holder = await follow(http, minute)
    await reaches(holder, 0)
    await add(http, list_id, "first")  # the leading edge: the key's minute starts now
    sequence = await add(http, list_id, "second")
    started = time.monotonic()
    resumed = await follow(http, minute, {"Last-Event-ID": str(sequence)})
    await reaches(resumed, sequence, timeout=DEADLINE_S)
    mine = await follow(http, {**minute, "min_seq": str(sequence)})
    assert mine.status == 200, "min_seq got a 504 though the read model was there"
    assert (await reaches(mine, sequence, timeout=DEADLINE_S))[0] >= sequence
    assert time.monotonic() - started < DEADLINE_S
    await stop(holder, resumed, mine)


async def test_the_same_sql_of_two_principals_is_two_keys_each_in_its_own_budget(
    http: httpx.AsyncClient,
) -> None:
    sql = f"SELECT '{unique('squat')}' AS key"
    squatter, victim = (bearer("sql", subject=unique(who)) for who in ("squatter", "victim"))
    before = await metric(http, "live_queries")
    feeds = [await follow(http, {"sql": sql}, who) for who in (squatter, victim)]
    await asyncio.gather(*(reaches(one, 0) for one in feeds))
    assert await metric(http, "live_queries") == before + 2
    await stop(*feeds)


async def test_a_feed_whose_client_stops_reading_gives_its_place_back_at_the_tokens_exp(
    stack: SecuredStack, http: httpx.AsyncClient
) -> None:
    list_id = unique("list")
    pad = f"SELECT repeat('x', 200000) AS pad, count(*) FROM todos WHERE list_id = '{list_id}'"
    before = await metric(http, "live_subscriptions")
    short = {"Authorization": f"Bearer {token('sql', subject=unique('stall'), ttl_s=3)}"}
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", stack.port))
    query = httpx.QueryParams({"sql": pad, "min_interval_ms": "50"})
    sock.sendall(f"GET /api/live?{query} HTTP/1.1\r\nHost: x\r\n{_header(short)}\r\n\r\n".encode())
    try:  # ~200 KB answers the client never reads: a write waits for it
        await eventually(lambda: metric(http, "live_subscriptions"), lambda n: n == before + 1)
        for _ in range(4):
            await add(http, list_id)
        ended = await eventually(
            lambda: metric(http, "live_subscriptions"), lambda n: n == before, timeout=10
        )
        assert ended == before, "the feed kept its place past the token's exp"
    finally:
        sock.close()


async def test_answers_the_fan_out_writes_itself_are_exact_http_chunks_going_forward(
    http: httpx.AsyncClient, stack: SecuredStack
) -> None:
    """An answer due when it arrives is written by its key's fan-out below the ASGI chain
    (`gateway/feed/direct.py`): over a raw HTTP/1.1 socket each chunk is framed exactly
    and the answers only go forward, the last one with every todo."""
    list_id, before = unique("list"), await metric(http, "sse_direct_writes_total")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(stack.base.rsplit(":", 1)[1]))
    writer.write(f"GET /api/live?query=todo_lists.get&list_id={list_id}&min_interval_ms=100 "
                 f"HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {ADMIN['Authorization']}\r\n"
                 "\r\n".encode())  # fmt: skip
    await chunked.head(reader)
    raw, texts = b"", []

    async def direct_writes() -> float:  # one command at a time until the fan-out wrote one
        nonlocal raw
        texts.append(f"todo {len(texts)}")
        last = await add(http, list_id, texts[-1])
        while f"id: {last}\n".encode() not in raw:
            raw += await asyncio.wait_for(chunked.chunk(reader), 10)
        return await metric(http, "sse_direct_writes_total")

    await eventually(direct_writes, lambda n: n > before, timeout=20, every=0.15)
    writer.close()
    results = [e for e in parse(raw).events if e.type == "result"]
    ids = [int(e.last_event_id) for e in results]
    assert ids == sorted(set(ids))
    assert [i["text"] for i in json.loads(results[-1].data)["result"]["items"]] == texts

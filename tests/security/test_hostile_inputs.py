"""No 500 for any client input, and every 500 logged: the issue's examples, then hypothesis
feeding hostile values to every parameter, header and claim the gateway reads, over real
HTTP against writer, projector and gateway processes with auth on."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironstar.natsserver import NatsServer, free_port
from tests.support.secured import SecuredStack, bearer, running, signed, token, unique
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

DEEP = "[" * 1100 + "]" * 1100


@pytest.fixture(scope="module")
def open_stack(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredStack]:
    """Auth on, rate limit off (so only the input decides the answer)."""
    with running(
        nats_server,
        tmp_path_factory.mktemp("hostile"),
        IRONSTAR_LIMIT_REQUESTS_PER_S="0",
        IRONSTAR_GATEWAY_QUERY_TIMEOUT_S="0.3",  # a min_seq from the future: the 504, soon
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(open_stack: SecuredStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open_stack.base, timeout=20) as http:
        yield http


def _status(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The answer's head (a feed that opens is closed at once)."""
    with client.stream(method, url, **kwargs) as reply:
        if not reply.headers.get("content-type", "").startswith("text/event-stream"):
            reply.read()
        return reply


def _logged_failures(stack: SecuredStack) -> list[str]:
    return [
        line
        for line in stack.gateway.log.read_text(errors="replace").splitlines()
        if "unhandled_exception" in line or "Exception in ASGI application" in line
    ]


# --- the examples, each from several sides ------------------------------------


@pytest.mark.parametrize("lead", ["", " ", "\n\t "])
@pytest.mark.parametrize("shape", [DEEP, '{"a":' * 1100 + "1" + "}" * 1100])
def test_json_nested_past_the_decoder_is_413_on_every_post(
    client: httpx.Client, lead: str, shape: str
) -> None:
    admin = bearer("admin", subject=unique("deep"))
    for path, headers in (
        ("/api/session", {}),  # public
        ("/api/session", admin),
        (f"/api/commands/todo_list/{unique()}", admin),
        ("/api/sql", admin),
    ):
        reply = client.post(path, content=lead + shape, headers=headers)
        assert reply.status_code == 413, (path, reply.text[:200])
        assert "nests deeper" in reply.json()["message"]


@pytest.mark.parametrize(
    "value", ["²", "\u0661\u0662", "9" * 5000, "1e3", "-5", " 5", "5 ", "0x10", "∞"]
)
def test_windows_that_are_not_ascii_milliseconds_are_422_naming_the_parameter(
    client: httpx.Client, value: str
) -> None:
    reader = bearer("read:*")
    for name in ("debounce_ms", "batch_ms"):
        reply = _status(client, "GET", "/api/events", params={name: value}, headers=reader)
        assert reply.status_code == 422, (name, value)
        assert reply.json()["field"] == name


@pytest.mark.parametrize(
    ("claims", "named"),
    [
        ('{"sub":"a","scope":"admin","exp":Infinity}', "exp"),
        ('{"sub":"a","scope":"admin","exp":NaN}', "exp"),
        ('{"sub":"a","scope":"admin","exp":1e400}', "exp"),
        ('{"sub":"a","scope":"admin","exp":-1e400}', "exp"),
        ('{"sub":"a","scope":"admin","exp":1' + "0" * 309 + "}", "exp"),
        ('{"sub":"a","scope":"admin","exp":-1' + "0" * 400 + "}", "exp"),
        ('{"sub":"a","scope":"admin","exp":4102444800,"nbf":1' + "0" * 309 + "}", "nbf"),
        ('{"sub":"a","scope":"admin","exp":4102444800,"iat":-1' + "0" * 309 + "}", "iat"),
        ('{"sub":"a","scope":"admin","exp":4102444800,"nbf":"tomorrow"}', "nbf"),
        ('{"sub":"a","scope":"admin","exp":4102444800,"nbf":Infinity}', "nbf"),
        ('{"sub":"a","scope":"admin:*","exp":4102444800}', "scope"),
        ('{"sub":"a","scope":"sql:*","exp":4102444800}', "scope"),
        ('{"sub":"a","scope":"read:todo_list commands:*:x","exp":4102444800}', "scope"),
        ('{"sub":{"a":1},"scope":"admin","exp":4102444800}', "sub"),
    ],
)
def test_correctly_signed_tokens_with_malformed_claims_are_401_naming_the_claim(
    client: httpx.Client, open_stack: SecuredStack, claims: str, named: str
) -> None:
    forged = signed(claims)
    for method, path in (("GET", "/api/users"), ("POST", "/api/sql"), ("POST", "/api/session")):
        reply = client.request(
            method, path, json={"sql": "SELECT 1"}, headers={"Authorization": f"Bearer {forged}"}
        )
        assert reply.status_code == 401, (path, reply.text)
        assert reply.json()["claim"] == named and f"`{named}`" in reply.json()["message"]
    page = client.get("/", headers={"Cookie": f"ironstar_session={forged}"})
    assert page.status_code == 200 and "Sign in" in page.text  # as if no cookie
    assert _logged_failures(open_stack) == []


def test_a_60000_character_correlation_id_is_refused_and_a_good_one_is_kept(
    client: httpx.Client,
) -> None:
    writer = bearer("commands:todo_list", subject=unique("cid"))
    url = f"/api/commands/todo_list/{unique()}"
    body = {"type": "add_todo", "payload": {"todo_id": "t", "text": "x"}}
    for value, status in (("x" * 60_000, 431), ("x" * 129, 400), ("a b", 400), ("é", 400)):
        headers = {**writer, "X-Correlation-Id": value}
        reply = client.post(url, json=body, headers={k: v.encode() for k, v in headers.items()})
        assert reply.status_code == status, (value[:20], reply.text[:200])
        assert len(reply.text) < 1000  # the value is not echoed back whole
    kept = client.post(url, json=body, headers={**writer, "X-Correlation-Id": "req-42.a:b/c"})
    assert kept.status_code == 200
    assert kept.json()["events"][0]["metadata"]["correlation_id"] == "req-42.a:b/c"


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "9" * 5000, "9" * 30, "1e400", "²"])
def test_numbers_past_any_integer_type_are_4xx_naming_the_parameter(
    client: httpx.Client, number: str
) -> None:
    admin = bearer("admin", subject=unique("numbers"))
    for path, name in (
        ("/api/events", "capacity"),
        ("/api/todo-lists", "min_seq"),
        ("/api/analytics/totals", "minutes"),
        ("/api/analytics/totals", "min_seq"),
    ):
        reply = _status(client, "GET", path, params={name: number}, headers=admin)
        if reply.status_code == 200:  # a capacity over the cap is lowered to it
            assert name == "capacity" and number.isdigit(), (path, number[:10])
            continue
        assert 400 <= reply.status_code < 500, (path, name, reply.status_code)
        assert name in reply.text, (path, name)
    resumed = _status(client, "GET", "/api/events", params={"last_event_id": number}, headers=admin)
    assert resumed.status_code == 200  # an id that cannot be resumed: a snapshot


def test_every_correlation_id_of_a_request_is_checked_not_only_the_last(
    client: httpx.Client,
) -> None:
    writer = bearer("commands:todo_list", subject=unique("twice"))
    headers = [*writer.items(), ("X-Correlation-Id", "x" * 200), ("X-Correlation-Id", "ok")]
    body = {"type": "add_todo", "payload": {"todo_id": "t", "text": "x"}}
    reply = client.post(f"/api/commands/todo_list/{unique()}", json=body, headers=headers)
    assert reply.status_code == 400 and reply.json()["field"] == "X-Correlation-Id"


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": "ironstar_session=" + "a" * 9000},
        {"Authorization": "Bearer " + "a" * 9000},
        {"Last-Event-ID": "9" * 60_000},
        {"If-Match": "1" * 10_000},
        {f"X-Filler-{n}": "y" for n in range(101)},
        {f"X-Big-{n}": "y" * 8000 for n in range(5)},
    ],
)
def test_oversized_headers_are_431_before_anything_reads_them(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    for method, path in (("GET", "/"), ("GET", "/api/events"), ("POST", "/api/session")):
        reply = _status(client, method, path, headers=headers)
        assert reply.status_code == 431, (path, list(headers)[:2])


# --- hypothesis: every parameter, header and claim ---------------------------------------

hostile_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "²",
            "\u0661",
            "9" * 400,
            "-1",
            "1e400",
            "NaN",
            "Infinity",
            "0x1",
            "%00",
            "../..",
            "a.b*>",
            "todo_list:",
            ":",
            ",,",
            "todo_list:a,todo_list:a",
            "🙂",
            "\u202e",
            " ",
            "",
            "*",
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=10**308, max_value=10**1000),  # past a float: math.isfinite overflows
    st.integers(min_value=-(10**1000), max_value=-(10**308)),
    st.text(max_size=10),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
claims = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.one_of(st.text(max_size=300), numbers),
        "scope": st.one_of(st.text(max_size=60), st.sampled_from(["admin:*", "sql:*", "read:*"])),
        "exp": numbers,
        "nbf": numbers,
        "iat": numbers,
        "iss": st.one_of(st.text(max_size=10), numbers),
        "aud": st.one_of(st.text(max_size=10), numbers),
    },
)
PARAMS = {
    "/api/events": [
        "topics", "client_id", "policy", "capacity", "debounce_ms", "batch_ms", "format",
        "last_event_id",
    ],
    "/api/todo-lists": ["min_seq"],
    "/api/analytics/totals": ["min_seq", "minutes"],
    "/": ["list"],
}  # fmt: skip
HEADERS = ["Last-Event-ID", "If-Match", "X-Correlation-Id", "Cookie", "Datastar-Request", "Origin"]


def _json_text(value: object) -> str:
    """JSON as a lax issuer writes it: Infinity and NaN included."""
    return json.dumps(value, allow_nan=True, default=str)


def _header_safe(value: str) -> bytes | None:
    """The value as bytes an HTTP/1.1 client can send (no controls, no edge blanks)."""
    raw = value.encode("utf-8").strip(b" \t")
    return None if any((b < 0x20 and b != 0x09) or b == 0x7F for b in raw) else raw


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    target=st.sampled_from(sorted(PARAMS)),
    values=st.dictionaries(
        st.sampled_from(sorted({p for ps in PARAMS.values() for p in ps})), hostile_text
    ),
    headers=st.dictionaries(st.sampled_from(HEADERS), hostile_text, max_size=3),
    token_claims=st.none() | claims,
    path_id=hostile_text,
    command=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), hostile_text)),
)
def test_hostile_values_anywhere_never_get_a_5xx(
    client: httpx.Client,
    open_stack: SecuredStack,
    target: str,
    values: dict[str, str],
    headers: dict[str, str],
    token_claims: dict[str, object] | None,
    path_id: str,
    command: dict[str, str] | None,
) -> None:
    sent: dict[str, bytes] = {}
    for name, value in headers.items():
        raw = _header_safe(value)
        if raw is not None:
            sent[name] = raw
    if token_claims is not None:
        sent["Authorization"] = f"Bearer {signed(_json_text(token_claims))}".encode()
    else:
        sent["Authorization"] = f"Bearer {token('admin')}".encode()
    params = {k: v for k, v in values.items() if k in PARAMS[target]}
    segment = quote(path_id, safe="") or "x"
    requests = [
        ("GET", target, {"params": params}),
        ("GET", f"/api/todo-lists/{segment}", {"params": params}),
        ("GET", f"/ui/panels/todos/items?list={segment}", {}),
        ("POST", f"/api/commands/todo_list/{segment}", {"json": command}),
        ("POST", "/api/sql", {"params": params, "json": command}),
        ("POST", "/api/session", {}),
    ]
    for method, url, extra in requests:
        reply = _status(client, method, url, headers=sent, **extra)
        status = reply.status_code
        # the documented 504: the read model has not reached a `min_seq` from the future
        assert status < 500 or (status == 504 and "min_seq" in str(params)), (method, url, status)
    assert _logged_failures(open_stack) == []


def test_an_unexpected_exception_is_logged_with_its_traceback_and_answered_without_internals(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The generic handler, in a real gateway process with one route that is a bug."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        import uvicorn
        from litestar import get
        from common.settings import GatewaySettings, NatsSettings
        from common.telemetry import configure_logging
        from gateway.app import create_app

        @get("/bug")
        async def bug() -> None:
            raise RuntimeError("internal detail 0xdeadbeef")

        configure_logging("gateway")
        app = create_app(NatsSettings(url="{nats_server.url}"), GatewaySettings(port={port}))
        app.register(bug)
        uvicorn.run(app, host="127.0.0.1", port={port}, log_config=None, access_log=False)
        """
    )
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=out)
    try:
        until(lambda: "Uvicorn running" in log.read_text(), 30, log.read_text)
        reply = httpx.get(f"http://127.0.0.1:{port}/bug", timeout=10)
        assert reply.status_code == 500
        body = reply.json()
        assert body["error"] == "internal" and "0xdeadbeef" not in reply.text
        assert body["correlation_id"] in body["message"]
        until(lambda: "unhandled_exception" in log.read_text(), 10, log.read_text)
        line = next(
            json.loads(text)
            for text in log.read_text().splitlines()
            if "unhandled_exception" in text
        )
        assert line["level"] == "error" and line["path"] == "/bug"
        assert "Traceback" in line["exception"] and "0xdeadbeef" in line["exception"]
        assert line["correlation_id"] == body["correlation_id"]
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("size", [9_000, 20_000])
def test_a_huge_url_is_refused_with_414(client: httpx.Client, size: int) -> None:
    admin = bearer("admin", subject=unique("url"))
    for method, path, params in (
        ("GET", "/api/events", {"topics": "todo_list," * (size // 10)}),
        ("GET", "/", {"list": "a" * size}),
        ("GET", "/api/todo-lists/" + "a" * size, {}),
    ):
        reply = _status(client, method, path, params=params, headers=admin)
        assert reply.status_code == 414, (path[:30], size, reply.status_code)

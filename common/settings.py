"""Settings: one frozen struct per concern, loaded once from `IRONSTAR_*` variables.

Every field of a struct with `env_prefix = "NATS"` is read from `IRONSTAR_NATS_<FIELD>`
(e.g. `url` ← `IRONSTAR_NATS_URL`). `ironstar config` prints every variable with its
default, which is what the README's configuration table shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self, get_args, get_type_hints

import msgspec

from common.errors import Invalid
from common.origins import origin_of, proxy_networks

# Bounds of settings: a value outside them is refused at start, naming its variable.
_MOST = 2**31 - 1  # counts and byte sizes: what a C int (setsockopt, DuckDB, NATS) holds
Count = Annotated[int, msgspec.Meta(ge=1, le=_MOST)]  # one or more
Some = Annotated[int, msgspec.Meta(ge=0, le=_MOST)]  # zero (none, or off where said) or more
Seconds = Annotated[float, msgspec.Meta(ge=0.01, le=86_400)]  # 10 ms up to a day
Millis = Annotated[int, msgspec.Meta(ge=0, le=86_400_000)]  # a window: 0 up to a day
Interval = Annotated[int, msgspec.Meta(ge=1, le=86_400_000)]  # 1 ms up to a day
Port = Annotated[int, msgspec.Meta(ge=0, le=65_535)]
MetricsPort = Annotated[int, msgspec.Meta(ge=-1, le=65_535)]  # 0: a free port, -1: off
Token = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]  # a subject token
COOKIE_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$"  # an RFC 6265 token (RFC 9110 tchar)


class _Section(msgspec.Struct, frozen=True, kw_only=True):
    env_prefix: ClassVar[str]
    help: ClassVar[dict[str, str]] = {}

    @classmethod
    def variables(cls) -> Iterator[tuple[str, str, Any, str]]:
        """(field, variable, default, help) for every field."""
        defaults = cls()
        for name in cls.__struct_fields__:
            variable = f"IRONSTAR_{cls.env_prefix}_{name.upper()}"
            yield name, variable, getattr(defaults, name), cls.help.get(name, "")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """The section read from `IRONSTAR_<SECTION>_<FIELD>` variables of `environ` (default
        the process's), `overrides` (not None) winning. Invalid naming the section and field when a
        value does not convert to its field's type or bounds."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            name: env[variable] for name, variable, _, _ in cls.variables() if variable in env
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise Invalid(cls._refusal(str(exc), values)) from None

    @classmethod
    def _refusal(cls, error: str, values: Mapping[str, Any]) -> str:
        """msgspec's `error` ("Expected `int` >= 1 - at `$.batch_size`") said of the
        variable and the value given: "IRONSTAR_PROJECTOR_BATCH_SIZE='-5': expected ..."."""
        what, _, where = error.rpartition(" - at `$.")
        name = where.rstrip("`")
        if not what or name not in cls.__struct_fields__:  # not one field's: as msgspec says
            return f"bad setting in IRONSTAR_{cls.env_prefix}_*: {error}"
        given = str(values.get(name, ""))[:100]
        choices = get_args(get_type_hints(cls)[name])  # a Literal's values, else ()
        if choices:
            what = "expected one of " + ", ".join(map(repr, choices))
        return f"IRONSTAR_{cls.env_prefix}_{name.upper()}={given!r}: {what[0].lower()}{what[1:]}"


def check_all(environ: Mapping[str, str] | None = None) -> None:
    """Every section read from `environ` (default the process's): Invalid naming the first
    variable a service would refuse. For commands that start several services (`ironstar
    up`, `ironstar cluster up`), before anything is started or created."""
    for section in SECTIONS:
        section.from_env(environ)


APP_VARIABLE = "IRONSTAR_APP"
DEFAULT_APP = "examples.todo"


def app_name(environ: Mapping[str, str] | None = None) -> str:
    """The app package every service loads (`IRONSTAR_APP`, default the example):
    an importable module name; the current directory is on the import path."""
    env = os.environ if environ is None else environ
    return env.get(APP_VARIABLE, "").strip() or DEFAULT_APP


class NatsSettings(_Section, frozen=True, kw_only=True):
    """How every service reaches NATS and names its stream and subjects (`IRONSTAR_NATS_*`;
    durations in seconds)."""

    env_prefix = "NATS"
    help = {
        "url": "NATS server URL(s), comma separated",
        "prefix": "subject prefix of every Ironstar subject",
        "stream": "name of the JetStream stream that is the event store",
        "replicas": "stream replicas: 1 on a single server, 3 on a cluster",
        "max_consumers": "stream's consumer limit (SSE clients + projector replicas)",
        "duplicate_window_s": "command-id deduplication window of the stream",
        "request_timeout_s": "timeout of NATS requests between services",
        "user": "NATS user name (with `password`); `ironstar up` sets one per service",
        "password": "NATS password of `user`",
        "creds_file": "NATS credentials file (JWT + nkey seed) instead of user/password",
        "tls_ca_file": "CA bundle to verify the NATS server (turns TLS on)",
        "tls_cert_file": "client certificate for NATS mutual TLS",
        "tls_key_file": "key of `tls_cert_file`",
    }
    url: str = "nats://127.0.0.1:4222"
    prefix: Annotated[
        str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,3}$")
    ] = "ironstar"
    stream: Token = "IRONSTAR_EVENTS"
    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    max_consumers: Count = 20_000
    duplicate_window_s: Seconds = 300.0
    request_timeout_s: Seconds = 5.0
    user: str = ""
    password: str = ""
    creds_file: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""


class WriterSettings(_Section, frozen=True, kw_only=True):
    """The writer's limits and metrics endpoint (`IRONSTAR_WRITER_*`)."""

    env_prefix = "WRITER"
    help = {
        "max_retries": "re-decides after an optimistic-concurrency conflict before 409",
        "cache_size": "aggregates whose state the writer keeps in memory",
        "concurrency": "commands a writer process handles at once",
        "metrics_port": "port of the writer's /metrics (0: a free port, -1: off)",
        "metrics_host": "interface of the writer's /metrics",
        "max_events_per_command": "most events one command may append (one atomic batch)",
    }
    max_retries: Some = 8
    cache_size: Count = 10_000
    concurrency: Count = 256
    metrics_port: MetricsPort = -1
    metrics_host: str = "127.0.0.1"
    max_events_per_command: Count = 1000


class ProjectorSettings(_Section, frozen=True, kw_only=True):
    """A projector replica's batching, poison policy, SQL limits and files (`IRONSTAR_PROJECTOR_*`;
    `_s` seconds, `_ms` milliseconds)."""

    env_prefix = "PROJECTOR"
    help = {
        "name": "replica name: names its durable consumer and its DuckDB file",
        "data_dir": "directory of the replica's DuckDB file",
        "batch_size": "events applied per DuckDB transaction at most when not catching up",
        "batch_ms": "longest wait to fill a batch",
        "catchup_batch_size": "events per transaction at most while more than batch_size wait",
        "catchup_batch_max": "events per transaction at most while catching up over many "
        "aggregates (twice the aggregates known, from catchup_batch_size up to this; "
        "~4 KB of projector memory per event of it)",
        "catchup_process_above": "events behind at a feed's start above which catching up "
        "runs its NATS client in a process of its own (0: never)",
        "on_poison": "'skip': record an event that cannot be decoded or applied in dead_letters, "
        "go on; 'halt': stop applying (queries go on)",
        "sql_timeout_s": "time limit of an ad-hoc SQL query, counted from its arrival",
        "sql_max_rows": "row limit of an ad-hoc SQL query",
        "sql_concurrency": "ad-hoc SQL queries running at once per replica",
        "sql_queue": "ad-hoc SQL queries waiting for a slot per replica; more get 429",
        "sql_per_principal": "ad-hoc SQL queries one principal may have running or waiting "
        "per replica (and at most half the running slots)",
        "max_answer_bytes": "largest reply in bytes (capped by the NATS max payload); "
        "longer answers are cut and marked truncated",
        "snapshot_storage_version": "DuckDB storage version of snapshots (v1.5.0: read by "
        "DuckDB 1.5 and later, e.g. the pip duckdb-cli)",
        "metrics_port": "port of the projector's /metrics (0: a free port, -1: off)",
        "metrics_host": "interface of the projector's /metrics",
    }
    name: Token = "projector-1"
    data_dir: str = ".ironstar"
    batch_size: Count = 1000
    batch_ms: Millis = 50
    catchup_batch_size: Count = 50_000
    catchup_batch_max: Count = 250_000
    catchup_process_above: Some = 100_000
    on_poison: Literal["skip", "halt"] = "skip"
    sql_timeout_s: Seconds = 5.0
    sql_max_rows: Count = 10_000
    sql_concurrency: Count = 2
    sql_queue: Some = 8
    sql_per_principal: Count = 4
    max_answer_bytes: Count = 1_000_000
    snapshot_storage_version: Annotated[
        str, msgspec.Meta(pattern=r"^v[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$")
    ] = "v1.5.0"
    metrics_port: MetricsPort = -1
    metrics_host: str = "127.0.0.1"


class GatewaySettings(_Section, frozen=True, kw_only=True):
    """The gateway's HTTP listener, request and SSE limits, auth and dashboard
    (`IRONSTAR_GATEWAY_*`; `_s` seconds, `_ms` milliseconds, `_bytes` bytes); the limits are in
    docs/security.md."""

    env_prefix = "GATEWAY"
    help = {
        "host": "HTTP interface; loopback by default",
        "port": "HTTP port",
        "max_body_bytes": "largest accepted request body",
        "query_timeout_s": "how long a query waits for `min_seq` before 504",
        "sse_capacity": "default per-client buffer / lag threshold (events)",
        "sse_max_capacity": "largest `capacity` a client may ask for",
        "sse_keepalive_s": "seconds between keep-alive comments",
        "sse_retry_ms": "reconnect hint sent to clients",
        "sse_inactive_s": "the server removes a gone client's consumer after this long",
        "sse_unbounded_cap": "hard cap of the `unbounded` policy before disconnecting",
        "sse_max_per_client": "open SSE connections per client id",
        "sse_max_connections": "open SSE connections per gateway process",
        "sse_max_consumers_per_principal": "feed consumers one principal (token subject, or "
        "client address without auth) may hold on a gateway: open, or closed less than "
        "sse_inactive_s ago",
        "sse_reserved_consumers": "consumers of the stream's max_consumers feeds never take "
        "(left for projector replicas and tools)",
        "sse_unbounded_budget_bytes": "bytes of events all `unbounded` feeds of a gateway "
        "may hold together; past it the feed holding most is ended with a notice",
        "sse_max_topics": "topics one feed may filter on",
        "sse_debounce_ms": "debounce window of a feed that asks for `debounce_ms=on`",
        "sse_debounce_max_wait_ms": "longest a debounced event waits under a continuous stream",
        "sse_batch_ms": "batch window of a feed that asks for `batch_ms=on`",
        "sse_batch_max": "events in one batch message at most",
        "sse_max_window_ms": "largest `debounce_ms` / `batch_ms` a client may ask for",
        "sse_send_buffer_bytes": "kernel send buffer per connection (0: the OS default)",
        "sse_live_tail": "caught-up feeds share one read of the stream (gateway/feed/tail.py); "
        "off: every feed pulls its own consumer",
        "sse_pull_budget": "events a gateway's catching-up feeds may have asked for and not yet "
        "received, together (gateway/feed/credit.py)",
        "datastar_url": "URL of the official Datastar bundle to use instead of the built-in script",
        "storage_paths": "event store directories whose disk to watch: full, commands get 503 "
        "at once (`ironstar up` sets it)",
        "trusted_proxies": "proxies (IPs or CIDRs, comma separated) whose X-Forwarded-For/-Proto "
        "are believed; empty: none, the peer address is the client",
        "public_origin": "origin browsers use (https://host[:port]) when a proxy rewrites Host; "
        "cookie POSTs must come from it",
        "live_interval_ms": "a live query's default `min_interval_ms`: "
        "one answer per this many ms at most on average",
        "live_min_interval_ms": "smallest `min_interval_ms` a live query may ask for",
        "live_max_subscriptions": "open live-query feeds per gateway process",
        "live_max_per_principal": "open live-query feeds per principal on a gateway",
        "live_max_queries": "distinct live queries (each one evaluation) per gateway process",
        "live_max_queries_per_principal": "distinct live queries one principal may start on a "
        "gateway (dashboard views are not counted)",
        "live_concurrency": "live-query evaluations a gateway runs at once in the ad-hoc SQL "
        "lane (catalogue queries and views go in rounds, one in flight)",
    }
    host: str = "127.0.0.1"
    port: Port = 8000
    max_body_bytes: Count = 64 * 1024
    query_timeout_s: Seconds = 5.0
    sse_capacity: Count = 256
    sse_max_capacity: Count = 10_000
    sse_keepalive_s: Seconds = 15.0
    sse_retry_ms: Millis = 2000  # an SSE `retry:` is digits only
    sse_inactive_s: Seconds = 300.0
    sse_unbounded_cap: Count = 100_000
    sse_max_per_client: Count = 8
    sse_max_connections: Count = 10_000
    sse_max_consumers_per_principal: Count = 256
    sse_reserved_consumers: Some = 100
    sse_unbounded_budget_bytes: Annotated[int, msgspec.Meta(ge=1, le=2**40)] = 64 * 1024 * 1024
    sse_max_topics: Count = 32
    sse_debounce_ms: Millis = 300
    sse_debounce_max_wait_ms: Millis = 1_000
    sse_batch_ms: Millis = 100
    sse_batch_max: Count = 500
    sse_max_window_ms: Millis = 10_000
    sse_send_buffer_bytes: Some = 0
    sse_live_tail: bool = True
    sse_pull_budget: Count = 8_192
    datastar_url: str = ""
    storage_paths: str = ""
    live_interval_ms: Interval = 250
    live_min_interval_ms: Interval = 50
    live_max_subscriptions: Count = 5_000
    live_max_per_principal: Count = 64
    live_max_queries: Count = 256
    live_max_queries_per_principal: Count = 64
    live_concurrency: Count = 4
    trusted_proxies: str = ""
    public_origin: str = ""

    def __post_init__(self) -> None:
        proxy_networks(self.trusted_proxies)
        origin_of(self.public_origin)


class AuthSettings(_Section, frozen=True, kw_only=True):
    """Who may use the gateway: see docs/security.md. No secret: no auth, loopback only."""

    env_prefix = "AUTH"
    help = {
        "secret": "HS256 key of bearer tokens (>= 32 bytes); empty: no auth, loopback only",
        "secret_file": "file holding the HS256 key (preferred over `secret`)",
        "issuer": "required `iss` of tokens (empty: not checked)",
        "audience": "required `aud` of tokens (empty: not checked)",
        "leeway_s": "clock skew allowed when checking `exp` and `nbf`",
        "cookie_name": "session cookie set by POST /api/session (for EventSource)",
        "cookie_secure": "mark the session cookie Secure (HTTPS only; browsers allow localhost)",
        "cors_origins": "origins allowed by CORS, comma separated (empty: CORS off)",
    }
    secret: str = ""
    secret_file: str = ""
    issuer: str = ""
    audience: str = ""
    leeway_s: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 30.0
    cookie_name: Annotated[str, msgspec.Meta(pattern=COOKIE_NAME)] = "ironstar_session"
    cookie_secure: bool = True
    cors_origins: str = ""


class LimitSettings(_Section, frozen=True, kw_only=True):
    """Per-request limits of the gateway (the body size is GATEWAY_MAX_BODY_BYTES)."""

    env_prefix = "LIMIT"
    help = {
        "requests_per_s": "requests per client (token subject, else IP) per second; 0: off",
        "burst": "requests a client may send at once above its rate",
        "json_depth": "deepest nesting of arrays/objects in a JSON body",
        "string_bytes": "longest string (or key) in a JSON body, in bytes",
        "body_timeout_s": "time a client has to send its whole request body (else 408)",
        "header_timeout_s": "time a client has to send its request headers (else 408, closed)",
    }
    requests_per_s: Annotated[float, msgspec.Meta(ge=0, le=1e9)] = 1000.0
    burst: Count = 2000
    json_depth: Count = 32
    string_bytes: Count = 16 * 1024
    body_timeout_s: Seconds = 10.0
    header_timeout_s: Seconds = 10.0


SECTIONS: tuple[type[_Section], ...] = (
    NatsSettings,
    WriterSettings,
    ProjectorSettings,
    GatewaySettings,
    AuthSettings,
    LimitSettings,
)

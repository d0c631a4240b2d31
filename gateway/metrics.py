"""The gateway's Prometheus metrics (the default registry, served at `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Summary

connections = Gauge("sse_connections", "open SSE connections of this gateway process")
lags = Counter(
    "broadcast_lags_total", "times an SSE client fell more than its capacity behind the stream"
)
emit_seconds = Histogram(
    "sse_emit_duration_seconds",
    "time to hand one SSE write to the client's socket (includes waiting for it to drain)",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
drops = Counter(
    "rate_limit_drops_total",
    "events a client did not get because of its policy, debounce or buffer cap",
    ["policy"],
)
batch_sizes = Histogram(
    "batch_sizes", "events per SSE batch message", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)
client_lag = Summary(
    "sse_client_lag_events", "events still waiting in the stream for a client, per delivery"
)
skipped = Counter(
    "sse_skipped_events_total",
    "stream messages the gateway could not decode or render, once per reading (feeds on the "
    "live tail share one): sent as `skipped` frames (id only)",
)
tail_joined = Counter(
    "sse_tail_joined_total", "times a caught-up feed joined the live tail (gateway/feed/tail.py)"
)
direct_writes = Counter(
    "sse_direct_writes_total",
    "frames a fan-out (the live tail, a live query's answers) wrote to a caught-up feed's socket "
    "itself, past the ASGI send chain (gateway/feed/direct.py)",
)
tail_left = Counter(
    "sse_tail_left_total",
    "times the live tail let a feed go (it fell `capacity` behind, the tail lost its place, or "
    "the gateway stopped): it pulls its own consumer again",
)
live_subscriptions = Gauge("live_subscriptions", "open live-query feeds of this gateway")
live_queries = Gauge(
    "live_queries", "distinct live queries this gateway evaluates (one evaluation each)"
)
live_evaluations = Counter(
    "live_evaluations_total",
    "evaluations of live queries (each shared by all its subscribers), by query "
    "(`<projection>.<query>`, `sql.sql` for every ad-hoc one)",
    ["query"],
)
live_rounds = Counter(
    "live_rounds_total",
    "requests asking a projector for a round of due live catalogue queries, each answering "
    "all of its keys in one transaction (gateway/live/rounds.py)",
)
live_evaluation_seconds = Histogram(
    "live_evaluation_duration_seconds",
    "time of one live-query evaluation, from asking a replica to its answer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
live_results = Counter("live_results_sent_total", "live-query answers written to subscribers")

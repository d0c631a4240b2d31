"""The writer's metrics."""

from prometheus_client import Counter, Histogram

EVENTS_APPENDED = Counter(
    "events_appended_total", "Events appended to the stream", ["aggregate_type"]
)
APPEND_DURATION = Histogram(
    "append_duration_seconds",
    "Time from command received to append acknowledged",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
COMMANDS = Counter("commands_total", "Commands handled", ["type", "outcome"])
CONFLICTS = Counter(
    "append_conflicts_total", "Appends refused because another writer moved the aggregate"
)
RETRIES = Counter(
    "append_retries_total", "Publishes resent with the same message ids after a lost ack"
)

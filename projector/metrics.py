"""The projector's metrics."""

from prometheus_client import Counter, Gauge, Histogram

LAG = Gauge(
    "projection_lag_events", "Events in the stream not yet applied by this replica", ["projection"]
)
EVENTS_PROCESSED = Counter("projection_events_processed_total", "Events applied to the read model")
DEAD_LETTERS = Counter(
    "projection_dead_letters_total",
    "Events recorded as dead letters, by the projection that could not apply them (*: none could)",
    ["projection"],
)
STORAGE_EXHAUSTED = Gauge(
    "projection_storage_exhausted",
    "1 while this replica cannot write its read model: its disk is full",
)
HALTED = Gauge("projection_halted", "1 while the replica has stopped on a poison event")
CURRENT = Gauge(
    "projection_current",
    "1 while the replica is caught up and answers the reads asked of caught-up replicas first",
)
BATCH_SIZES = Histogram(
    "projection_batch_sizes",
    "Events per applied batch",
    buckets=(1, 2, 5, 10, 50, 100, 250, 500, 1000),
)
BATCH_DURATION = Histogram(
    "projection_batch_duration_seconds",
    "Time to decode and apply one batch, commit included",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
QUERY_DURATION = Histogram(
    "query_duration_seconds",
    "Time to answer a read-model query, min_seq wait included",
    ["query"],
)
SQL_HELD = Gauge(
    "sql_queries_held",
    "Ad-hoc SQL queries holding a place on this replica: running, or waiting for a slot or "
    "for min_seq",
    ["replica"],
)
SQL_RUNNING = Gauge(
    "sql_queries_running", "Ad-hoc SQL queries running on this replica's SQL threads", ["replica"]
)

"""Properties of the pure stream operators: batching and debounce."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.feed.policy import Policy, Skip
from gateway.feed.window import Batcher, Debouncer, Item, latest_per_key

CRITICAL = frozenset({"gone"})

# (key, event type, time step in ms) per event; sequences are their positions
events = st.lists(
    st.tuples(st.sampled_from("abcd"), st.sampled_from(["set", "set", "set", "gone"]),
              st.integers(0, 400)),
    max_size=80,
)  # fmt: skip


def _items(spec: list[tuple[str, str, int]]) -> list[tuple[Item, float]]:
    now, out = 0.0, []
    for seq, (key, kind, step) in enumerate(spec, start=1):
        now += step / 1000
        out.append((Item(seq, key, kind, b"{}"), now))
    return out


@given(events, st.integers(1, 10), st.integers(10, 300))
def test_batching_loses_nothing_keeps_order_and_respects_the_size(
    spec: list[tuple[str, str, int]], max_size: int, window_ms: int
) -> None:
    batcher = Batcher(window_ms / 1000, max_size)
    batches: list[list[Item]] = []
    for item, now in _items(spec):
        batches += batcher.due(now)
        batches += batcher.add([item], now)
    batches.append(batcher.flush())
    flat = [item.seq for batch in batches for item in batch]
    assert flat == list(range(1, len(spec) + 1))
    assert all(len(batch) <= max_size for batch in batches)


def _debounce(spec: list[tuple[str, str, int]], window_s: float) -> list[list[Item]]:
    debouncer = Debouncer(window_s, 4 * window_s, CRITICAL)
    flushes: list[list[Item]] = []
    for item, now in _items(spec):
        flushes.append(debouncer.due(now))
        flushes.append(debouncer.add(item, now))
    flushes.append(debouncer.flush())
    return [f for f in flushes if f]


@given(events, st.integers(10, 300))
def test_debounce_emits_the_last_event_per_key_of_each_window_and_every_critical_one(
    spec: list[tuple[str, str, int]], window_ms: int
) -> None:
    flushes = _debounce(spec, window_ms / 1000)
    emitted = [item.seq for flush in flushes for item in flush]
    assert emitted == sorted(emitted)  # in stream order, so an `id:` covers what precedes it
    kinds = {item.seq: item.event_type for item, _ in _items(spec)}
    assert {s for s, k in kinds.items() if k in CRITICAL} <= set(emitted)
    # each flush is exactly the last event per key of the events since the previous flush
    start = 0
    all_items = [item for item, _ in _items(spec)]
    for flush in flushes:
        end = flush[-1].seq
        window = all_items[start:end]
        assert flush == latest_per_key(window)
        start = end
    assert start == len(spec)  # nothing is left behind


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3)), max_size=60))
def test_drop_oldest_keeps_the_latest_event_per_aggregate_and_counts_the_rest(
    spec: list[tuple[str, int]],
) -> None:
    skip = Skip(Policy.DROP_OLDEST)
    items = [Item(seq, key, "set", b"{}") for seq, (key, _) in enumerate(spec, start=1)]
    for start in range(0, len(items), 7):
        skip.take(items[start : start + 7])
    assert skip.kept() == latest_per_key(items)
    assert skip.dropped() + len(skip.kept()) == len(items)


def test_debounce_flushes_a_continuous_stream_after_its_max_wait() -> None:
    debouncer = Debouncer(0.3, 1.0, CRITICAL)
    out: list[Item] = []
    for n in range(30):  # an update every 100 ms: never quiet for 300 ms
        out += debouncer.due(n / 10)
        out += debouncer.add(Item(n + 1, "a", "set", b"{}"), n / 10)
    assert [item.seq for item in out] == [10, 20]  # the latest one, at 1.0 s and at 2.0 s

"""A feed's rendering steps: debounce and batching windows, then SSE bytes per format."""

from __future__ import annotations

from common import catalogue, envelope
from gateway import datastar, metrics
from gateway.controls import Controls
from gateway.window import Batcher, Debouncer, Item
from gateway.wire import frame


class Writer:
    """Turns groups of items into SSE bytes in the client's format."""

    def __init__(self, ctl: Controls) -> None:
        self.datastar = ctl.format == "datastar"
        self.batched = ctl.batch_s is not None

    def one(self, item: Item) -> bytes:
        if self.datastar:
            return datastar.render(item.seq, envelope.decode(item.data), item.pending)
        if b"\n" in item.data or b"\r" in item.data:
            return frame(item.data, event=item.event_type, id=item.seq)
        return b"event: %b\nid: %d\ndata: %b\n\n" % (item.event_type.encode(), item.seq, item.data)

    def group(self, items: list[Item]) -> bytes:
        if not self.batched or self.datastar:
            return b"".join(map(self.one, items))
        metrics.batch_sizes.observe(len(items))
        body = b",".join(b'{"sequence":%d,"event":%s}' % (i.seq, i.data) for i in items)
        return frame(b"[" + body + b"]", event="batch", id=items[-1].seq)


class Pipeline:
    """Debounce, then batching, each optional: items in, groups of items out."""

    def __init__(self, ctl: Controls) -> None:
        self.debounce = (
            Debouncer(ctl.debounce_s, ctl.debounce_max_wait_s, catalogue.current().critical)
            if ctl.debounce_s is not None
            else None
        )
        self.batch = Batcher(ctl.batch_s, ctl.batch_max) if ctl.batch_s is not None else None

    def push(self, items: list[Item], now: float) -> list[list[Item]]:
        """Windows that ended before `now` close first; then `items` join new ones."""
        if self.debounce is not None:
            before = self.debounce.superseded
            due = self.debounce.due(now)
            items = due + [out for item in items for out in self.debounce.add(item, now)]
            metrics.drops.labels("debounce").inc(self.debounce.superseded - before)
        if self.batch is None:
            return [items] if items else []
        return [*self.batch.due(now), *self.batch.add(items, now)]

    def deadline(self) -> float | None:
        if self.debounce is None and self.batch is None:
            return None
        times = [t for t in (self._d(self.debounce), self._d(self.batch)) if t is not None]
        return min(times, default=None)

    @staticmethod
    def _d(op: Debouncer | Batcher | None) -> float | None:
        return op.deadline() if op is not None else None

    def flush(self) -> list[list[Item]]:
        items = self.debounce.flush() if self.debounce is not None else []
        if self.batch is None:
            return [items] if items else []
        return [g for g in [*self.batch.add(items, 0.0), self.batch.flush()] if g]

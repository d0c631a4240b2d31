"""A feed's rendering steps: debounce and batching windows, then SSE bytes per format."""

from __future__ import annotations

import json

from common import catalogue
from common.errors import Invalid
from gateway import metrics
from gateway.dashboard import datastar
from gateway.feed import reading
from gateway.feed.controls import Controls
from gateway.feed.window import Batcher, Debouncer, Item
from gateway.feed.wire import frame


class Renderer:
    """Turns groups of items into SSE bytes in the client's format.

    A skipped item (see `gateway.feed.reading`) is written as `event: skipped` with its `id:`
    and `{"sequence", "subject", "reason"}` (json), as `{"sequence", "skipped"}` inside a
    batch, and as an event-log line plus the `seq` signal (datastar); so is an event the
    datastar renderer cannot render (a payload without the fields its type needs).
    """

    def __init__(self, ctl: Controls) -> None:
        self.datastar = ctl.format == "datastar"
        self.batched = ctl.batch_s is not None

    def one(self, item: Item) -> bytes:
        """One item as SSE bytes: its `json` frame (`event: <type>`, `id: <sequence>`, the envelope
        as `data:`; the tail's ready-made frame when it has one), or its Datastar events."""
        if item.wire and not self.datastar:
            return item.wire
        if item.skipped:
            return self._skipped(item)
        if self.datastar:
            try:
                return datastar.render(item.seq, item.event, item.pending)
            except (KeyError, TypeError, ValueError, AttributeError, Invalid) as exc:
                return self._skipped(reading.skipped(item, f"cannot be rendered: {exc!r}"))
        return frame(item.data, event=item.event_type, id=item.seq)

    def _skipped(self, item: Item) -> bytes:
        if self.datastar:
            return datastar.render_skipped(item.seq, item.skipped)
        body = {"sequence": item.seq, "subject": reading.subject_of(item), "reason": item.skipped}
        return frame(json.dumps(body), event="skipped", id=item.seq)

    def group(self, items: list[Item]) -> bytes:
        """A group of items as SSE bytes: each on its own, or with batching on (json) one `event:
        batch` whose `data:` is a JSON array and whose `id:` is the group's last sequence."""
        if not self.batched or self.datastar:
            return b"".join(map(self.one, items))
        metrics.batch_sizes.observe(len(items))
        body = b",".join(
            b'{"sequence":%d,"skipped":%b}' % (i.seq, json.dumps(i.skipped).encode())
            if i.skipped
            else b'{"sequence":%d,"event":%s}' % (i.seq, i.data)
            for i in items
        )
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
        """When (event-loop time, seconds) a window closes next; None when none is open."""
        if self.debounce is None and self.batch is None:
            return None
        times = [t for t in (self._d(self.debounce), self._d(self.batch)) if t is not None]
        return min(times, default=None)

    @staticmethod
    def _d(op: Debouncer | Batcher | None) -> float | None:
        return op.deadline() if op is not None else None

    def flush(self) -> list[list[Item]]:
        """Everything the windows hold, as groups, now (a dropping policy skips ahead, or the feed
        ends)."""
        items = self.debounce.flush() if self.debounce is not None else []
        if self.batch is None:
            return [items] if items else []
        return [g for g in [*self.batch.add(items, 0.0), self.batch.flush()] if g]

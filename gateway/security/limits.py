"""Per-request limits: requests per client per second, body size, time and JSON shape.

Pure parts (the token bucket, the JSON walk) are separate from the ASGI reading so they
can be tested and fuzzed without a server.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from typing import Any

from litestar.types import Receive, ReceiveMessage

from common.errors import RequestTimeout, TooLarge, TooManyRequests


class RateLimiter:
    """A token bucket per client key: `rate_per_s` requests per second, `burst` at once.

    Keys are kept LRU up to `max_keys`, so a flood of distinct clients costs bounded
    memory (an evicted client simply starts again with a full bucket).
    """

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> None:
        """Spend one token of `key`, or raise 429 saying when to come back."""
        if self.rate_per_s <= 0:
            return
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = max(1, math.ceil((1.0 - tokens) / self.rate_per_s))
            raise TooManyRequests(
                f"more than {self.rate_per_s:g} requests per second from this client; "
                f"retry after {wait} s",
                retry_after=wait,
            )
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


def check_json(value: Any, max_depth: int, max_string_bytes: int) -> None:
    """413 naming the field when the value nests too deep or holds too long a string."""
    if not _fits(value, max_depth, max_string_bytes):
        _refuse(value, max_depth, max_string_bytes)


def _too_long(text: str, max_bytes: int) -> bool:
    return len(text) > max_bytes // 4 and len(text.encode()) > max_bytes


def _fits(value: Any, max_depth: int, max_string_bytes: int) -> bool:
    """The fast pass: no paths kept, since nearly every body fits."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _too_long(item, max_string_bytes):
                return False
        elif isinstance(item, dict):
            if depth > max_depth:
                return False
            for key, child in item.items():
                if _too_long(key, max_string_bytes):
                    return False
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return False
            stack.extend([(child, depth + 1) for child in item])
    return True


def _refuse(value: Any, max_depth: int, max_string_bytes: int) -> None:
    """The slow pass, only for a body that does not fit: find and name the field."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if _too_long(item, max_string_bytes):
                raise TooLarge(
                    f"{path or 'the body'} is {len(item.encode())} bytes long; "
                    f"at most {max_string_bytes} bytes per string",
                    field=path or "(body)",
                    limit=max_string_bytes,
                )
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise TooLarge(
                f"the JSON body nests deeper than {max_depth} levels at {path or '(body)'}",
                field=path or "(body)",
                limit=max_depth,
            )
        if isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key[:64]}" if path else key[:64]
                stack.append((key, depth, where))
                stack.append((child, depth + 1, where))
        else:
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))


async def read_body(receive: Receive, max_bytes: int, timeout_s: float) -> bytes:
    """The whole request body: 413 past `max_bytes`, 408 when it takes over `timeout_s`."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break  # the client went away; the handler will see the disconnect
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(
                        f"the request body is over {max_bytes} bytes; send less",
                        limit=max_bytes,
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g} s; send it at once"
        ) from None
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out `body` once, then defers to the real one (disconnects)."""
    sent = False

    async def again() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            message: ReceiveMessage = {"type": "http.request", "body": body, "more_body": False}
            return message
        return await receive()

    return again

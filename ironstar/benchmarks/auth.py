"""`ironstar bench auth`: what the front door costs a request, beside its raw ceilings.

Per-request work of the gateway's security layer, each timed in a loop in this process:
token verification beside one bare HMAC-SHA256 (its ceiling), the JSON shape check of a
body beside decoding that body with msgspec, and one rate-limiter step.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import msgspec

from common.tokens import Verifier
from gateway.security.limits import RateLimiter, check_json


def add(parser: argparse.ArgumentParser) -> None:
    """Register this benchmark's options on its `ironstar bench` subparser."""
    parser.add_argument("--seconds", type=float, default=1.0, help="time per figure (default 1)")


def _rate(work: Callable[[], object], seconds: float) -> float:  # calls of `work` a second
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(100):
            work()
        done += 100
    return done / elapsed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The gateway's per-request checks, each run for `--seconds`: `{"token_verifications_per_s",
    "json_shape_checks_per_s", "rate_limiter_steps_per_s", "ceiling_msgspec_decodes_per_s", ...}`
    (operations a second)."""
    secret = b"s" * 48
    verifier = Verifier(secret)
    token = verifier.mint("bench", ["commands:todo_list", "read:todo_list"], 3600)
    body = msgspec.json.encode(
        {
            "type": "add_todo",
            "payload": {"items": [{"todo_id": f"t{i}", "text": "x" * 40} for i in range(800)]},
        }
    )
    value = msgspec.json.decode(body)
    limiter = RateLimiter(rate_per_s=1e12, burst=10**9)
    clients = [f"ip:10.0.{i // 256}.{i % 256}" for i in range(1000)]
    step = iter(range(10**12))
    seconds = args.seconds
    return {
        "token_verifications_per_s": _rate(lambda: verifier.verify(token), seconds),
        "ceiling_hmac_sha256_per_s": _rate(
            lambda: hmac.new(secret, token.encode(), hashlib.sha256).digest(), seconds
        ),
        "body_bytes": len(body),
        "json_shape_checks_per_s": _rate(lambda: check_json(value, 32, 16384), seconds),
        "ceiling_msgspec_decodes_per_s": _rate(lambda: msgspec.json.decode(body), seconds),
        "rate_limiter_steps_per_s": _rate(
            lambda: limiter.take(clients[next(step) % 1000], time.monotonic()), seconds
        ),
    }

"""Auth on: the test secret, tokens signed with it, and writer, projector and gateway
started as processes with bearer-token auth on (the security tier's stack, also used by
e2e tests that need auth)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common.tokens import Verifier
from ironstar.natsserver import NatsServer, free_port
from tests.support.processes import Service

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def token(
    *scopes: str, subject: str = "tester", ttl_s: float = 6 * 3600, secret: str = SECRET
) -> str:
    """A token for `subject` with `scopes`, signed with `secret`, valid for `ttl_s` seconds:
    long enough for tokens minted at import (module constants) to outlive a slow suite."""
    return Verifier(secret.encode()).mint(subject, scopes, ttl_s)


def signed(
    claims: str, key: bytes = SECRET.encode(), header: str = '{"alg":"HS256","typ":"JWT"}'
) -> str:
    """A correctly signed token whose claims are exactly these bytes (JSON as any issuer
    might write it, `Infinity` and all), under this header."""
    signing = f"{_b64(header.encode())}.{_b64(claims.encode())}"
    return f"{signing}.{_b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bearer(*scopes: str, subject: str = "tester") -> dict[str, str]:
    """The `Authorization` header of a `token` with these scopes."""
    return {"Authorization": f"Bearer {token(*scopes, subject=subject)}"}


@dataclass
class SecuredStack:
    """A stack started by `running`: its gateway's base URL and port, the environment of its
    services, and the gateway process."""

    base: str
    port: int
    env: dict[str, str]
    gateway: Service


@contextmanager
def running(nats_server: NatsServer, workdir: Path, **settings: str) -> Iterator[SecuredStack]:
    """writer + projector + gateway with `settings` (IRONSTAR_* names) on a fresh stream."""
    tag = uuid.uuid4().hex[:10]
    port = free_port()
    env = {
        "IRONSTAR_NATS_URL": nats_server.url,
        "IRONSTAR_NATS_PREFIX": f"s{tag}",
        "IRONSTAR_NATS_STREAM": f"S{tag.upper()}",
        "IRONSTAR_PROJECTOR_DATA_DIR": str(workdir / "projector"),
        "IRONSTAR_GATEWAY_PORT": str(port),
        "IRONSTAR_AUTH_SECRET": SECRET,
        **settings,
    }
    services = [Service(name, env, workdir) for name in ("writer", "projector", "gateway")]
    started: list[Service] = []
    try:
        started += [service.launch() for service in services]  # side by side, as in Stack
        for service in services:
            service.ready()
        yield SecuredStack(f"http://127.0.0.1:{port}", port, env, services[-1])
    finally:
        for service in reversed(started):
            service.stop()


def unique(prefix: str = "x") -> str:
    """A name no other test (or earlier run on the same server) uses: `prefix`, 12 random
    hex digits, the Unix time."""
    return f"{prefix}{uuid.uuid4().hex[:12]}_{int(time.time())}"

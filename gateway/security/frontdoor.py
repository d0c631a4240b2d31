"""The gateway's front door: auth, rate and body limits, security headers, CORS.

`Security(...).app_options()` is all `create_app` needs: one middleware in front of every
route (401/403, 429, 413, 408 before a handler runs), a `before_send` hook that puts the
security headers on every response (404s and errors included), the session routes, and a
CORS config only when origins are configured (CORS is off by default).

HTML pages get a Content-Security-Policy allowing only this origin; their inline
`<script>` and `<style>` blocks are allowed by hash, computed from the page as served.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import BadRequest, IronstarError, TooLarge
from common.origins import origin_of
from common.settings import AuthSettings, GatewaySettings, LimitSettings
from gateway.api.openapi import complete
from gateway.security.auth import ACTOR, Gate, session, verifier
from gateway.security.grants import PRINCIPAL, Principal
from gateway.security.headers import bounded, check_correlation, check_target
from gateway.security.limits import RateLimiter, check_json, read_body, replay

HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NO_PAGES = ("/schema", "/api/")  # never HTML pages (an API answer gets `API_CSP`)
_INLINE = re.compile(rb"<(script|style)(?![^>]*\bsrc=)[^>]*>(.*?)</\1>", re.DOTALL | re.IGNORECASE)


class Security:
    """The front door's configuration, built once from the settings (see the module docstring)."""

    def __init__(self, auth: AuthSettings, limits: LimitSettings, gateway: GatewaySettings):
        self.auth = auth
        self.limits = limits
        self.gateway = gateway
        self.gate = Gate(verifier(auth), auth.cookie_name, origin_of(gateway.public_origin))
        self.limiter = RateLimiter(limits.requests_per_s, limits.burst)

    def app_options(self) -> dict[str, Any]:
        """The keyword arguments `create_app` passes to Litestar: the middleware, the
        security-headers hook, CORS (only with `cors_origins` set) and the OpenAPI completion at
        startup."""
        origins = [o.strip() for o in self.auth.cors_origins.split(",") if o.strip()]
        cors = None
        if origins:
            cors = CORSConfig(
                allow_origins=origins,
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "If-Match", "Last-Event-ID"],
                expose_headers=["Retry-After"],
            )
        return {
            "middleware": [DefineMiddleware(FrontDoor, security=self)],
            "before_send": [security_headers],
            "cors_config": cors,
            "on_startup": [lambda app: complete(app, self.gate.check is not None)],
        }

    route_handlers = (session,)

    def state(self) -> dict[str, Any]:
        """What the session routes read from the app's state: the gate and whether cookies are
        `Secure`."""
        return {"gate": self.gate, "cookie_secure": self.auth.cookie_secure}

    def page_csp(self, html: bytes) -> bytes:
        """The Content-Security-Policy of one HTML page: this origin only, its inline
        `<script>`/`<style>` blocks by SHA-256 hash, plus the Datastar bundle's origin (and
        `'unsafe-eval'`, which the official bundle needs) when `datastar_url` is set."""
        scripts, styles = ["'self'"], ["'self'"]
        for tag, body in _INLINE.findall(html):
            digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
            (scripts if tag.lower() == b"script" else styles).append(f"'sha256-{digest}'")
        if self.gateway.datastar_url:
            parts = urlsplit(self.gateway.datastar_url)
            scripts.append(f"{parts.scheme}://{parts.netloc}")
            scripts.append("'unsafe-eval'")  # the official bundle evaluates data-* expressions
        policy = (
            f"default-src 'self'; script-src {' '.join(scripts)}; style-src {' '.join(styles)}; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'"
        )
        return policy.encode()


async def security_headers(message: Message, scope: Scope) -> None:
    """nosniff, no framing, no referrer on every response; a deny-all CSP unless set."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in HEADERS.items():
        headers[name.decode()] = value.decode()
    if "content-security-policy" not in headers and not scope["path"].startswith("/schema"):
        headers["content-security-policy"] = API_CSP.decode()


class FrontDoor:
    """ASGI middleware: admit, rate-limit and bound the body before any handler runs."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        security = self.security
        method, path = scope["method"], scope["path"]
        refused: Exception | None = None
        claims, headers = None, {}
        try:
            check_target(path, scope["query_string"])
            headers = bounded(scope["headers"])
            query = _query(scope["query_string"])
            claims = security.gate.admit(method, path, headers, query, scope["scheme"])
        except IronstarError as exc:  # counted against the client's rate all the same
            refused = exc
        client = (scope.get("client") or ("unknown", 0))[0]
        key = f"sub:{claims.subject}" if claims else f"ip:{client}"
        security.limiter.take(key, time.monotonic())
        if refused is not None:
            raise refused
        check_correlation(scope["headers"])
        ACTOR.set(claims.subject if claims is not None else None)
        PRINCIPAL.set(Principal(key, claims, auth=security.gate.check is not None))
        if method in _BODY_METHODS:
            receive = await self._bounded(headers, receive)
        if not path.startswith(_NO_PAGES):  # API answers keep the deny-all CSP; a wrapper
            send = _with_page_csp(send, security)  # held by every open feed costs memory
        await self.app(scope, receive, send)

    async def _bounded(self, headers: dict[str, str], receive: Receive) -> Receive:
        limits, most = self.security.limits, self.security.gateway.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > most:
            raise TooLarge(f"the request body is over {most} bytes; send less", limit=most)
        body = await read_body(receive, most, limits.body_timeout_s)
        if body.lstrip()[:1] in (b"{", b"["):
            try:
                value = msgspec.json.decode(body)
            except msgspec.DecodeError:
                value = None  # the handler says what is malformed
            except RecursionError:  # deeper than the decoder goes: far past any limit
                raise TooLarge(
                    f"the JSON body nests deeper than {limits.json_depth} levels",
                    field="(body)",
                    limit=limits.json_depth,
                ) from None
            check_json(value, limits.json_depth, limits.string_bytes)
        return replay(body, receive)


def _query(raw: bytes) -> dict[str, str]:
    """Query parameters, each at most once: the grant is checked on the value the handler
    uses, so `?topics=granted&topics=other` must not pick one here and another there."""
    found: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        if key in found:
            raise BadRequest(
                f"query parameter {key[:40]!r} is given twice; give it once", field=key
            )
        found[key] = value
    return found


def _with_page_csp(send: Send, security: Security) -> Send:
    """Hold an HTML response until its body is complete, then add its page CSP."""
    held: list[Message] = []

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            content_type = MutableScopeHeaders.from_message(message).get("content-type", "")
            if content_type.startswith("text/html"):
                held.append(message)
                return
        if held and message["type"] == "http.response.body":
            held.append(message)
            if message.get("more_body", False):
                return
            html = b"".join(bytes(m.get("body", b"")) for m in held[1:])  # type: ignore[call-overload]
            start = held[0]
            MutableScopeHeaders.from_message(start)["content-security-policy"] = security.page_csp(
                html
            ).decode()
            await send(start)
            await send({"type": "http.response.body", "body": html, "more_body": False})
            held.clear()
            return
        await send(message)

    return sending

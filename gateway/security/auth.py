"""Who may do what: bearer tokens (or the session cookie) checked against each request.

The scope a request needs at the door follows from its method and path alone
(`needed_scopes`), so every route is covered without touching its handler; a path not in
the table needs `admin` (deny by default). The SSE feed needs `read:` for every topic it
asks for: a filter outside the grant is 403, never silently narrowed. Read models are
checked where they are read, by one rule (`gateway/security/grants.py`); the dashboard's pages take
a token when there is a valid one and show nothing private without.

Browsers' EventSource cannot send headers, so `POST /api/session` exchanges a bearer token
for an HttpOnly, SameSite=Strict cookie. The cookie is honoured for reads; for anything
else it also needs a same-origin request, so another site cannot spend it (CSRF).
Tokens are never read from the URL, where they would end up in logs and histories.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import HttpMethod, Request, Response, route
from litestar.datastructures import Cookie

from common import catalogue
from common.errors import BadRequest, Invalid, NotFound, Unauthorized
from common.settings import AuthSettings
from common.tokens import MAKE_SECRET, MIN_SECRET_BYTES, Claims, Verifier
from gateway.feed.topics import parse_topics
from gateway.security.grants import topic_grant

# The verified token's subject during a request: the gateway records it as the `actor` of
# the events a command appends (None when auth is off).
ACTOR: ContextVar[str | None] = ContextVar("actor", default=None)

PUBLIC = frozenset({"/healthz", "/readyz", "/favicon.ico", "/api/session"})
PUBLIC_PREFIXES = ("/schema", "/static/", "/app/")
PAGES = frozenset({"/"})
PAGE_PREFIXES = ("/ui/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_URL_TOKENS = frozenset({"access_token", "token", "jwt", "bearer", "authorization"})


def verifier(settings: AuthSettings) -> Verifier | None:
    """The token verifier, or None when no secret is configured (auth off). Invalid when
    `secret_file` cannot be read or the secret is shorter than 32 bytes (RFC 7518 §3.2)."""
    secret = settings.secret
    if settings.secret_file:
        try:
            secret = Path(settings.secret_file).read_text().strip()
        except OSError as exc:
            raise Invalid(
                f"cannot read IRONSTAR_AUTH_SECRET_FILE {settings.secret_file}: {exc.strerror}"
            ) from None
    if not secret:
        return None
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise Invalid(f"the auth secret must be at least {MIN_SECRET_BYTES} bytes; {MAKE_SECRET}")
    return Verifier(secret.encode(), settings.issuer, settings.audience, settings.leeway_s)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name, an IPv4 or an IPv6 address, bracketed or not) only listens on this
    machine: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_notice(host: str, check: Verifier | None) -> str:
    """What to say at start about auth; refuses a non-loopback address without auth."""
    if check is not None:
        return "bearer-token auth on"
    if not is_loopback(host):
        raise Invalid(
            f"refusing to listen on {host} without authentication: set IRONSTAR_AUTH_SECRET "
            "(or _SECRET_FILE), or bind to 127.0.0.1 (see docs/security.md)"
        )
    return "NO AUTH: loopback only, unauthenticated (set IRONSTAR_AUTH_SECRET to require tokens)"


def credentials(method: str, path: str) -> str:
    """`none` for public paths; `optional` for the dashboard's pages, which show what a
    valid token or cookie grants and nothing private without one; `required` otherwise."""
    if path in PUBLIC or path.startswith(PUBLIC_PREFIXES):
        return "none"
    if path in PAGES or path.startswith(PAGE_PREFIXES):
        return "optional"
    return "required"


def needed_scopes(method: str, path: str, query: Mapping[str, str]) -> list[str]:
    """The grants a request needs at the door; [] when none is checked here.

    Read models (`/api/todo-lists`, `/api/users`, `/api/analytics`, `/api/sql`,
    `/api/live`, and the pages) need a principal, and the grant of what they show where it is read
    (`gateway/security/grants.py`), so that rule has one place. A path in no table needs `admin`.
    """
    if credentials(method, path) != "required":
        return []
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "commands"] and len(parts) >= 3:
        return [f"commands:{parts[2]}"]
    if parts[:2] == ["api", "events"] and len(parts) == 2:
        topics = parse_topics(query.get("topics"))
        if not topics:
            return [topic_grant(name) for name in sorted(catalogue.current().aggregates)]
        return [topic_grant(t.aggregate_type, t.aggregate_id) for t in topics]
    if parts[:2] == ["api", "sql"] and len(parts) == 2 and method == "POST":
        return []
    if parts[:2] == ["api", "live"] and len(parts) == 2 and method in SAFE_METHODS:
        return []  # a live query's grant is its query's, checked at subscribe (grants.py)
    if method in SAFE_METHODS and _is_read(path):
        return []  # the catalogue read's grant is checked where it is read (grants.py)
    return ["admin"]


def _is_read(path: str) -> bool:
    """A catalogue read: `/api/read/{projection}/{query}` or one of the app's aliases."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "read"] and len(parts) == 4:
        return True
    return catalogue.current().alias(path) is not None


@dataclass(frozen=True)
class Gate:
    """The front door's check of who is asking: tokens verified by `check` (None: auth off), the
    session cookie `cookie_name` honoured for same-origin requests of `public_origin`."""

    check: Verifier | None
    cookie_name: str
    public_origin: str = ""  # normalised `IRONSTAR_GATEWAY_PUBLIC_ORIGIN`, '' when unset

    def admit(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        scheme: str,
    ) -> Claims | None:
        """The caller's verified claims (None when auth is off); 401 or 403 otherwise.

        `scheme`: the request's, `http` or `https` (the connection's, or a trusted proxy's
        `X-Forwarded-Proto`, as the ASGI scope has it).
        """
        if _URL_TOKENS & {key.lower() for key in query}:
            raise BadRequest(
                "tokens are never accepted in the URL (it ends up in logs); send "
                "`Authorization: Bearer <token>`, or POST /api/session for a cookie",
                field="query",
            )
        if self.check is None:
            return None
        need = credentials(method, path)
        if need == "none":
            return None
        if need == "optional":  # a page: an expired cookie gets the sign-in prompt
            try:
                return self.authenticate(method, headers, scheme)
            except Unauthorized:
                return None
        claims = self.authenticate(method, headers, scheme)
        for scope in needed_scopes(method, path, query):
            claims.require(scope)
        return claims

    def authenticate(self, method: str, headers: Mapping[str, str], scheme: str) -> Claims:
        """The verified claims of the request's bearer token or session cookie; 401 when there is
        none, it does not verify, or a cookie comes with an unsafe method from another origin."""
        assert self.check is not None
        token = self._token(method, headers, scheme)
        if token is None:
            raise Unauthorized(
                "this gateway needs a token: send `Authorization: Bearer <token>` "
                "(mint one with `ironstar token`), or a session cookie from POST /api/session"
            )
        return self.check.verify(token)

    def _token(self, method: str, headers: Mapping[str, str], scheme: str) -> str | None:
        value = headers.get("authorization")
        if value is not None:
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("the Authorization header must be `Bearer <token>`")
            return token.strip()
        cookie = _cookies(headers.get("cookie", "")).get(self.cookie_name)
        if cookie is None:
            return None
        if method not in SAFE_METHODS and not _same_origin(headers, scheme, self.public_origin):
            raise Unauthorized(
                "the session cookie is only honoured for same-origin requests; "
                "send `Authorization: Bearer <token>` from other origins"
            )
        return cookie


def _cookies(header: str) -> dict[str, str]:
    found = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            found[name] = value
    return found


def _same_origin(headers: Mapping[str, str], scheme: str, public_origin: str) -> bool:
    """The browser says the request comes from this site: `Sec-Fetch-Site: same-origin`, or
    an `Origin` equal to the configured public origin or to this request's own origin, its
    scheme and the `Host` it was sent to (a proxy that rewrites `Host` needs the public
    origin configured). Origins compare as RFC 6454 says: scheme, host and port all equal."""
    if headers.get("sec-fetch-site") == "same-origin":
        return True
    origin, host = headers.get("origin"), headers.get("host")
    if origin is None:
        return False
    origin = origin.lower()
    if public_origin and origin == public_origin:
        return True
    return host is not None and origin == _own_origin(scheme, host.lower())


def _own_origin(scheme: str, host: str) -> str:
    """`scheme://host[:port]` as a browser writes it in `Origin` (no default port)."""
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    if default and host.endswith(default):
        host = host.removesuffix(default)
    return f"{scheme}://{host}"


@route(
    "/api/session", http_method=[HttpMethod.POST, HttpMethod.DELETE], status_code=200, tags=["auth"]
)
async def session(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """POST: set the HttpOnly session cookie from `Authorization: Bearer <token>` (for
    EventSource, which cannot send headers). DELETE: clear it. NotFound (404) when auth is
    off; Unauthorized (401) without a valid bearer token."""
    gate: Gate = request.app.state.gate
    if request.method == HttpMethod.DELETE:
        closed = {"session": "closed"}
        return Response(closed, cookies=[_cookie(request, gate.cookie_name, "", 0)])
    if gate.check is None:
        raise NotFound("authentication is off on this gateway (loopback only): no session")
    if "authorization" not in request.headers:
        raise Unauthorized("send the token as `Authorization: Bearer <token>` to open a session")
    claims = gate.authenticate("POST", request.headers, request.url.scheme)
    max_age_s = max(0, claims.expires - int(time.time()))
    body = {"subject": claims.subject, "scopes": sorted(claims.scopes), "expires": claims.expires}
    token = request.headers["authorization"].strip().partition(" ")[2].strip()
    return Response(body, cookies=[_cookie(request, gate.cookie_name, token, max_age_s)])


def _cookie(request: Request[Any, Any, Any], name: str, value: str, max_age_s: int) -> Cookie:
    secure: bool = request.app.state.cookie_secure
    return Cookie(
        key=name,
        value=value,
        max_age=max_age_s,
        path="/",
        httponly=True,
        secure=secure,
        samesite="strict",
    )

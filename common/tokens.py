"""Bearer tokens: HS256 JSON Web Tokens, signed and verified with the standard library.

A token carries `sub` (who), `scope` (space separated grants) and `exp` (always required);
`nbf`, `iat`, `iss` and `aud` are checked when present or configured. Grants:

    commands:<aggregate_type>   send commands to that aggregate type (`commands:*`: any)
    read:<topic>                read models and feeds of an aggregate type, or of one
                                aggregate (`read:todo_list`, `read:todo_list:groceries`,
                                `read:stream` for the built-in chart, `read:*`)
    sql                         ad-hoc read-only SQL
    admin                       everything, including /metrics

Only `alg: HS256` is accepted (never `none`), and signatures are compared in constant time.
Claims are parsed strictly: `exp`, `nbf` and `iat` are finite JSON numbers (RFC 7519
NumericDate), `sub` a printable string, and every word of `scope` follows the grammar above;
anything else is a 401 naming the claim, never a token that is half understood.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from common.errors import Forbidden, Unauthorized

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
MAKE_SECRET = (  # the one way every error about the secret suggests
    "make one with `ironstar token --new-secret`, e.g. "
    "`export IRONSTAR_AUTH_SECRET=$(.venv/bin/ironstar token --new-secret)`"
)
MAX_TOKEN_BYTES = 8192
_HEADER = {"alg": ALGORITHM, "typ": "JWT"}
_NAME = r"[A-Za-z0-9_-]{1,64}"
SCOPE = re.compile(rf"admin|sql|commands:(?:\*|{_NAME})|read:(?:\*|{_NAME}(?::{_NAME})?)")
MAX_SUBJECT = 256
MAX_SCOPES = 256
# RFC 7519 §2: a NumericDate is a JSON number of seconds since the epoch; we also keep it
# inside what a calendar can name (year 9999), so no date arithmetic can overflow.
MAX_NUMERIC_DATE = 253_402_300_799


@dataclass(frozen=True, slots=True)
class Claims:
    """A verified token's claims: `subject` (`sub`), its `scopes` (the space-separated `scope`
    claim), and when it expires (`exp`, seconds since 1970)."""

    subject: str
    scopes: frozenset[str]
    expires: int

    def grants(self, needed: str) -> bool:
        """Whether one scope (`commands:todo_list`, `read:todo_list:abc`, `sql`) is granted.

        Only `commands:*` and `read:*` are wildcards; `read:<type>` covers
        `read:<type>:<id>`. Nothing else widens a grant (`admin:*` and `sql:*` grant nothing).
        """
        if "admin" in self.scopes or needed in self.scopes:
            return True
        verb, _, rest = needed.partition(":")
        if verb in ("read", "commands") and f"{verb}:*" in self.scopes:
            return True
        parent, child, _ = rest.partition(":")
        return verb == "read" and bool(child) and f"read:{parent}" in self.scopes

    def require(self, needed: str) -> None:
        """Nothing when `needed` is granted (`grants`); Forbidden (403) naming it and the granted
        scopes otherwise."""
        if not self.grants(needed):
            raise Forbidden(
                f"this token does not grant {needed!r} (it grants: "
                f"{' '.join(sorted(self.scopes)) or 'nothing'}); ask for a token with that scope",
                scope=needed,
            )


def parse_scopes(value: object) -> frozenset[str]:
    """The `scope` claim: space-separated scopes of the grammar in the module docstring;
    anything else is a 401 naming the claim and the first value that is not a scope."""
    if not isinstance(value, str):
        raise _bad_claim("scope", "must be a string of space-separated scopes")
    scopes = value.split(" ")
    if len(scopes) > MAX_SCOPES:
        raise _bad_claim("scope", f"holds more than {MAX_SCOPES} scopes")
    for scope in scopes:
        if scope and not SCOPE.fullmatch(scope):
            raise _bad_claim(
                "scope",
                f"holds {scope[:80]!r}, which is not a scope (admin, sql, commands:<type>|*, "
                "read:<type>|*, read:<type>:<id>)",
            )
    return frozenset(s for s in scopes if s)


def numeric_date(claims: dict[str, Any], name: str, required: bool = False) -> float | None:
    """A NumericDate claim (RFC 7519 §2, §4.1.4-6): a finite JSON number, not a string,
    boolean, `Infinity`, `NaN`, `1e400` or an integer of hundreds of digits; 401 naming it."""
    if name not in claims:
        if required:
            raise _bad_claim(name, "is missing; mint the token with a lifetime")
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_claim(name, f"must be a number of seconds since 1970 (got {_shape(value)})")
    # The range first: it is exact for integers of any size (math.isfinite and float()
    # overflow on one of 310 digits) and false for NaN and the infinities.
    if not 0 <= value <= MAX_NUMERIC_DATE or not math.isfinite(value):
        raise _bad_claim(name, f"must be a finite time between 0 and {MAX_NUMERIC_DATE}")
    return float(value)


def _shape(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _bad_claim(name: str, why: str) -> Unauthorized:
    return Unauthorized(f"the token's `{name}` claim {why}", claim=name)


@dataclass(frozen=True, slots=True)
class Verifier:
    """Checks tokens against one secret and, when set, one issuer and one audience."""

    secret: bytes
    issuer: str = ""
    audience: str = ""
    leeway_s: float = 30.0

    def mint(
        self, subject: str, scopes: Iterable[str], ttl_s: float, now: float | None = None
    ) -> str:
        """A token for `subject` granting `scopes`, valid from `now` (default the clock; seconds
        since 1970) for `ttl_s` seconds, signed with this secret (HS256, RFC 7519) and naming the
        issuer and audience when set."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "sub": subject,
            "scope": " ".join(sorted(set(scopes))),
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ttl_s),
        }
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        signing = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
        return f"{signing}.{_b64(self._sign(signing))}"

    def verify(self, token: str, now: float | None = None) -> Claims:
        """The token's claims, or Unauthorized saying what is wrong with it (and naming the
        claim, `claim`, when one is malformed: `_bad_claim` builds that error). `now`: Unix
        seconds (default the clock)."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized("the bearer token is not a JWT (header.claims.signature)")
        header, claims = _json_part(parts[0], "header"), _json_part(parts[1], "claims")
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"the token must be signed with {ALGORITHM}")
        if "crit" in header:  # RFC 7515 §4.1.11: extensions we do not understand
            raise Unauthorized("the token's header has `crit` extensions this gateway lacks")
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}"), _unb64(parts[2])):
            raise Unauthorized("the token's signature is wrong: it was not issued for this gateway")
        clock = time.time() if now is None else now
        expires = numeric_date(claims, "exp", required=True)
        assert expires is not None
        not_before, _issued = numeric_date(claims, "nbf"), numeric_date(claims, "iat")
        if clock > expires + self.leeway_s:
            raise Unauthorized("the token has expired; get a new one", claim="exp")
        if not_before is not None and clock + self.leeway_s < not_before:
            raise Unauthorized("the token is not valid yet (`nbf` is in the future)", claim="nbf")
        issuer, audience = claims.get("iss"), claims.get("aud")
        if "iss" in claims and not isinstance(issuer, str):  # null included
            raise _bad_claim("iss", f"must be a string (got {_shape(issuer)})")
        if "aud" in claims and not (
            isinstance(audience, str)
            or (isinstance(audience, list) and all(isinstance(a, str) for a in audience))
        ):
            raise _bad_claim("aud", "must be a string or an array of strings")
        if self.issuer and issuer != self.issuer:
            raise Unauthorized(f"the token was not issued by {self.issuer!r}", claim="iss")
        if self.audience and not _has_audience(audience, self.audience):
            raise Unauthorized(f"the token is not meant for {self.audience!r}", claim="aud")
        subject = claims.get("sub")
        if (
            not isinstance(subject, str)
            or not 0 < len(subject) <= MAX_SUBJECT
            or not subject.isprintable()
        ):
            raise _bad_claim("sub", f"must be a printable string of 1 to {MAX_SUBJECT} characters")
        return Claims(subject, parse_scopes(claims.get("scope", "")), int(expires))

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self.secret, signing_input.encode(), hashlib.sha256).digest()


def _has_audience(value: object, audience: str) -> bool:
    return value == audience or (isinstance(value, list) and audience in value)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Unauthorized("the token is not base64url encoded") from None


def _json_part(text: str, what: str) -> dict[str, Any]:
    """The JSON object of a token's header or claims. A member name twice, at any depth, is
    a 401 naming it: verifiers disagree on which one counts (RFC 7515 §5.2 and RFC 7519 §4
    allow rejecting). An integer too long for Python's `int` (4,300 digits) parses as
    infinity, which the NumericDate check then refuses naming its claim."""
    try:
        value = json.loads(_unb64(text), object_pairs_hook=_unique_members, parse_int=_bounded_int)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, _Duplicate):
            raise Unauthorized(
                f"the token's {what} holds `{exc.name[:80]}` more than once; refused, since "
                "verifiers disagree on which one counts",
                **({"claim": exc.name} if what == "claims" else {"header": exc.name}),
            ) from None
        raise Unauthorized(f"the token's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise Unauthorized(f"the token's {what} is not a JSON object")
    return value


class _Duplicate(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for name, member in pairs:
        if name in value:
            raise _Duplicate(name)
        value[name] = member
    return value


_MAX_INT_DIGITS = 40  # far beyond any NumericDate; longer parses as infinity


def _bounded_int(text: str) -> int | float:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)

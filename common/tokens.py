"""Bearer tokens: HS256 JSON Web Tokens, signed and verified with the standard library.

A token carries `sub` (who), `scope` (space separated grants) and `exp` (always required);
`nbf`, `iat`, `iss` and `aud` are checked when present or configured. Grants:

    commands:<aggregate_type>   send commands to that aggregate type (`commands:*`: any)
    read:<topic>                read models and feeds of an aggregate type, or of one
                                aggregate (`read:todo_list`, `read:todo_list:groceries`,
                                `read:analytics`, `read:*`)
    sql                         ad-hoc read-only SQL
    admin                       everything, including /metrics

Only `alg: HS256` is accepted (never `none`), and signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
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
_HEADER = {"alg": ALGORITHM, "typ": "JWT"}


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    scopes: frozenset[str]
    expires: int

    def grants(self, needed: str) -> bool:
        """Whether one scope (`commands:todo_list`, `read:todo_list:abc`, `sql`) is granted."""
        if "admin" in self.scopes or needed in self.scopes:
            return True
        kind, _, rest = needed.partition(":")
        if f"{kind}:*" in self.scopes:
            return True
        # `read:todo_list` covers `read:todo_list:<any id>`
        parent = rest.partition(":")[0]
        return bool(rest) and ":" in rest and f"{kind}:{parent}" in self.scopes

    def require(self, needed: str) -> None:
        if not self.grants(needed):
            raise Forbidden(
                f"this token does not grant {needed!r} (it grants: "
                f"{' '.join(sorted(self.scopes)) or 'nothing'}); ask for a token with that scope",
                scope=needed,
            )


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
        """The token's claims, or Unauthorized saying what is wrong with it."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 8192:
            raise Unauthorized("the bearer token is not a JWT (header.claims.signature)")
        header, claims = _json_part(parts[0], "header"), _json_part(parts[1], "claims")
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"the token must be signed with {ALGORITHM}")
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}"), _unb64(parts[2])):
            raise Unauthorized("the token's signature is wrong: it was not issued for this gateway")
        clock = time.time() if now is None else now
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            raise Unauthorized("the token has no expiry (`exp`); mint one with a lifetime")
        if clock > expires + self.leeway_s:
            raise Unauthorized("the token has expired; get a new one")
        not_before = claims.get("nbf", 0)
        if isinstance(not_before, int | float) and clock + self.leeway_s < not_before:
            raise Unauthorized("the token is not valid yet (`nbf` is in the future)")
        if self.issuer and claims.get("iss") != self.issuer:
            raise Unauthorized(f"the token was not issued by {self.issuer!r}")
        if self.audience and not _has_audience(claims.get("aud"), self.audience):
            raise Unauthorized(f"the token is not meant for {self.audience!r}")
        subject, scope = claims.get("sub"), claims.get("scope", "")
        if not isinstance(subject, str) or not subject or not isinstance(scope, str):
            raise Unauthorized("the token needs a `sub` string and a space-separated `scope`")
        return Claims(subject[:200], frozenset(scope.split()), int(expires))

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
    try:
        value = json.loads(_unb64(text))
    except (ValueError, RecursionError):
        raise Unauthorized(f"the token's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise Unauthorized(f"the token's {what} is not a JSON object")
    return value

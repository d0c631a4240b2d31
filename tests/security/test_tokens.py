"""Tokens, grants and limits as pure functions: no server needed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.errors import Forbidden, Invalid, TooLarge, TooManyRequests, Unauthorized
from common.tokens import Claims, Verifier
from gateway.security.auth import bind_notice, credentials, is_loopback, needed_scopes
from gateway.security.grants import read_grant
from gateway.security.limits import RateLimiter, check_json
from tests.support.secured import signed

KEY = b"k" * 32
NOW = 1_800_000_000.0


def test_a_minted_token_verifies_with_its_subject_and_scopes() -> None:
    verifier = Verifier(KEY, issuer="ironstar", audience="dash")
    claims = verifier.verify(verifier.mint("alice", ["read:todo_list", "sql"], 60, NOW), NOW + 1)
    assert claims.subject == "alice" and claims.scopes == {"read:todo_list", "sql"}


@pytest.mark.parametrize(
    ("verifier", "at", "reason"),
    [
        (Verifier(KEY), NOW + 3600, "expired"),
        (Verifier(KEY), NOW - 3600, "not valid yet"),
        (Verifier(KEY, issuer="other"), NOW, "not issued by"),
        (Verifier(KEY, audience="other"), NOW, "not meant for"),
        (Verifier(b"j" * 32), NOW, "signature"),
    ],
)
def test_tokens_out_of_time_issuer_audience_or_key_are_unauthorized(
    verifier: Verifier, at: float, reason: str
) -> None:
    minted = Verifier(KEY).mint("bob", ["admin"], 60, NOW)
    with pytest.raises(Unauthorized, match=reason):
        verifier.verify(minted, at)


def test_grants_cover_children_and_wildcards_but_not_siblings() -> None:
    claims = Claims("c", frozenset({"read:todo_list", "commands:*"}), 0)
    assert claims.grants("read:todo_list:abc")
    assert claims.grants("commands:user_profile")
    assert not claims.grants("read:user_profile")
    assert not claims.grants("sql")
    assert Claims("a", frozenset({"admin"}), 0).grants("sql")
    with pytest.raises(Forbidden, match="read:user_profile"):
        claims.require("read:user_profile")


@pytest.mark.parametrize("scope", ["admin:*", "sql:*", "*", "read:", "commands:a:b", "read:a:*"])
def test_a_scope_outside_the_grammar_grants_nothing_and_refuses_the_token(scope: str) -> None:
    lookalike = Claims("m", frozenset({scope}), 0)
    for needed in ("admin", "sql", "read:todo_list", "commands:todo_list", "read:analytics"):
        assert not lookalike.grants(needed), (scope, needed)
    minted = Verifier(KEY).mint("mallory", [scope, "read:todo_list"], 60, NOW)
    with pytest.raises(Unauthorized, match="`scope` claim") as refused:
        Verifier(KEY).verify(minted, NOW)
    assert refused.value.detail["claim"] == "scope"


@pytest.mark.parametrize(
    ("claims", "named"),
    [
        ('{"sub":"a","scope":"sql","exp":Infinity}', "exp"),
        ('{"sub":"a","scope":"sql","exp":-Infinity}', "exp"),
        ('{"sub":"a","scope":"sql","exp":NaN}', "exp"),
        ('{"sub":"a","scope":"sql","exp":1e400}', "exp"),
        ('{"sub":"a","scope":"sql","exp":1' + "0" * 309 + "}", "exp"),
        ('{"sub":"a","scope":"sql","exp":-1' + "0" * 309 + "}", "exp"),
        ('{"sub":"a","scope":"sql","exp":9' + "9" * 4000 + "}", "exp"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"nbf":1' + "0" * 400 + "}", "nbf"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"nbf":-1' + "0" * 400 + "}", "nbf"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"iat":1' + "0" * 310 + "}", "iat"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"iat":-1' + "0" * 310 + "}", "iat"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"iat":1e999}', "iat"),
        ('{"sub":"a","scope":"sql","exp":"2000000000"}', "exp"),
        ('{"sub":"a","scope":"sql","exp":true}', "exp"),
        ('{"sub":"a","scope":"sql"}', "exp"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"nbf":"tomorrow"}', "nbf"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"nbf":NaN}', "nbf"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"iat":[1]}', "iat"),
        ('{"sub":"a","scope":["sql"],"exp":2000000000}', "scope"),
        ('{"sub":"a","scope":"sql  admin:*","exp":2000000000}', "scope"),
        ('{"sub":7,"scope":"sql","exp":2000000000}', "sub"),
        ('{"sub":"","scope":"sql","exp":2000000000}', "sub"),
        ('{"sub":"a\\u0000b","scope":"sql","exp":2000000000}', "sub"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"iss":5}', "iss"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"aud":[1]}', "aud"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"iss":null}', "iss"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"aud":null}', "aud"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"aud":["x",null]}', "aud"),
        ('{"sub":"a","scope":"read:todo_list","scope":"admin","exp":2000000000}', "scope"),
        ('{"sub":"a","scope":"admin","scope":"admin","exp":2000000000}', "scope"),
        ('{"sub":"a","sub":"b","scope":"sql","exp":2000000000}', "sub"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"exp":1}', "exp"),
        ('{"sub":"a","scope":"sql","exp":2000000000,"x":{"y":1,"y":2}}', "y"),
        *(  # longer than Python's int() takes from text (4,300 digits)
            ('{"sub":"a","scope":"sql",' + dates.format(f"{sign}1{'0' * digits}") + "}", name)
            for name, dates in (
                ("exp", '"exp":{}'),
                ("nbf", '"exp":2000000000,"nbf":{}'),
                ("iat", '"exp":2000000000,"iat":{}'),
            )
            for sign in ("", "-")
            for digits in (4299, 4300, 5000)
        ),
    ],
)
def test_malformed_claims_are_unauthorized_naming_the_claim(claims: str, named: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        Verifier(KEY).verify(signed(claims, KEY), NOW)
    assert refused.value.detail["claim"] == named
    assert f"`{named}`" in refused.value.message


@pytest.mark.parametrize(
    "header",
    [
        '{"alg":"none","alg":"HS256","typ":"JWT"}',
        '{"alg":"HS256","typ":"JWT","typ":"JWT"}',
        '{"alg":"HS256","kid":"a","kid":"b"}',
    ],
)
def test_a_header_with_a_member_twice_is_unauthorized_naming_it(header: str) -> None:
    forged = signed('{"sub":"a","scope":"sql","exp":2000000000}', KEY, header)
    with pytest.raises(Unauthorized, match="more than once") as refused:
        Verifier(KEY).verify(forged, NOW)
    assert refused.value.detail["header"] in header


def test_well_formed_numeric_dates_may_be_integers_or_fractions() -> None:
    claims = Verifier(KEY).verify(signed('{"sub":"a","scope":"sql","exp":1800000060.5}', KEY), NOW)
    assert claims.expires == 1_800_000_060 and claims.scopes == {"sql"}


def test_every_api_path_needs_a_scope_and_unknown_ones_need_admin() -> None:
    assert needed_scopes("POST", "/api/commands/todo_list/x", {}) == ["commands:todo_list"]
    # read models: a token at the door, the grant of what is shown where it is read
    assert needed_scopes("GET", "/api/users/u1", {}) == []
    assert credentials("GET", "/api/users/u1") == "required"
    assert credentials("POST", "/api/sql") == "required"
    assert credentials("GET", "/") == credentials("GET", "/ui/analytics") == "optional"
    assert read_grant("user_profiles", {"user_id": "u1"}) == "read:user_profile:u1"
    assert read_grant("todo_lists", {}) == "read:todo_list"
    assert read_grant("analytics", {"minutes": 5}) == "read:analytics"
    assert read_grant("sql", {"sql": "select 1"}) == "sql"
    assert read_grant("a_projection_added_later", {}) == "admin"
    assert needed_scopes("GET", "/api/events", {"topics": "todo_list:a"}) == ["read:todo_list:a"]
    assert needed_scopes("GET", "/api/whatever-is-added-later", {}) == ["admin"]
    assert needed_scopes("GET", "/healthz", {}) == []


def test_loopback_is_the_only_address_served_without_auth() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert "loopback only" in bind_notice("127.0.0.1", None)
    assert bind_notice("0.0.0.0", Verifier(KEY)) == "bearer-token auth on"
    with pytest.raises(Invalid, match=r"refusing to listen on 10\.0\.0\.5"):
        bind_notice("10.0.0.5", None)


def test_token_bucket_refuses_past_the_burst_and_refills_with_time() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    for _ in range(3):
        limiter.take("c", NOW)
    with pytest.raises(TooManyRequests) as refused:
        limiter.take("c", NOW)
    assert refused.value.detail["retry_after"] == 1
    limiter.take("other", NOW)  # one client's flood costs another nothing
    limiter.take("c", NOW + 0.5)


def test_json_limits_name_the_field_that_is_too_deep_or_too_long() -> None:
    with pytest.raises(TooLarge) as deep:
        check_json({"payload": {"a": [[[1]]]}}, max_depth=3, max_string_bytes=100)
    assert deep.value.detail["field"] == "payload.a[0]"
    with pytest.raises(TooLarge) as long:
        check_json({"payload": {"text": "é" * 60}}, max_depth=8, max_string_bytes=100)
    assert long.value.detail["field"] == "payload.text"
    check_json({"payload": {"text": "é" * 50}}, max_depth=8, max_string_bytes=100)


def test_token_command_mints_a_token_the_gateway_accepts() -> None:
    env = {**os.environ, "IRONSTAR_AUTH_SECRET": KEY.decode()}
    done = subprocess.run(
        [sys.executable, "-m", "ironstar", "token", "--subject", "ci", "--scope", "sql"],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    claims = Verifier(KEY).verify(done.stdout.strip())
    assert claims.subject == "ci" and claims.scopes == {"sql"}

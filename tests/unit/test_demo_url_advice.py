"""`ironstar demo --url` advice: a URL without a scheme, or with a path, names the one meant."""

from __future__ import annotations

import pytest

from ironstar.commands.demo import base_url, unusable


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("127.0.0.1:18201/", "http://127.0.0.1:18201/"),
        ("localhost:8000", "http://localhost:8000"),
        ("nats://127.0.0.1:4222", "http://127.0.0.1:4222"),
        ("[::1]:9", "http://[::1]:9"),
    ],
)
def test_a_url_without_http_is_refused_with_the_url_meant(given: str, meant: str) -> None:
    why = unusable(given)
    assert why is not None and why.endswith(f"did you mean --url {meant}?")


@pytest.mark.parametrize("fine", ["http://127.0.0.1:1", "HTTPS://example.org/x"])
def test_an_http_or_https_url_is_taken(fine: str) -> None:
    assert unusable(fine) is None


@pytest.mark.parametrize(
    "given", ["http://127.0.0.1:18201/api", "http://127.0.0.1:18201/api/commands?x=1#y"]
)
def test_the_base_url_drops_the_path_and_keeps_scheme_host_and_port(given: str) -> None:
    assert base_url(given) == "http://127.0.0.1:18201"

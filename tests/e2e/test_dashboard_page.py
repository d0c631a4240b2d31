"""The dashboard page over plain HTTP: offline by default, the official bundle on request."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.stack import Stack, send

pytestmark = pytest.mark.e2e


def test_the_page_loads_only_first_party_assets_and_shows_the_read_models(stack: Stack) -> None:
    reply = send(stack.url, "todo_list", "home", "add_todo", {"todo_id": "a", "text": "<b>A</b>"})
    page = httpx.get(f"{stack.url}/?list=home").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith(("/", "#", "data:")) for s in sources), sources
    assets = ("/static/datastar-lite.js", "/static/feed.js", "/static/dashboard.js",
              "/static/dashboard.css")  # fmt: skip
    for asset in assets:
        assert asset in sources
        assert httpx.get(f"{stack.url}{asset}").status_code == 200
    assert 'id="todos-home"' in page
    feed = re.search(r'data-feed="([^"]+)"', page)
    assert feed is not None and "format=datastar" in feed.group(1)
    if "&lt;b&gt;A&lt;/b&gt;" in page:  # the projector had applied it: the feed starts after
        assert f"last_event_id={reply['sequence']}" in feed.group(1)


def test_a_deployment_can_load_the_official_datastar_bundle_instead(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    bundle = "https://cdn.example.org/datastar@1.0.0/datastar.js"
    running = Stack({**service_env, "IRONSTAR_GATEWAY_DATASTAR_URL": bundle}, tmp_path)
    try:
        page = httpx.get(f"{running.url}/").text
    finally:
        running.stop()
    assert f'<script type="module" id="datastar" src="{bundle}"></script>' in page
    # Before it, the watch that tells the page at once when the bundle cannot load.
    assert page.index("/static/bundle-watch.js") < page.index(bundle)
    assert "datastar-lite.js" not in page
    # The shared feed (one per browser) hands the bundle its messages; no @get per tab.
    assert 'data-mode="datastar"' in page and "data-init" not in page
    assert "/static/feed.js" in page


def test_an_unknown_feed_format_is_a_422_naming_the_parameter(stack: Stack) -> None:
    reply = httpx.get(f"{stack.url}/api/events?format=xml")
    assert reply.status_code == 422
    assert reply.json()["fields"] == ["format"]


def test_a_list_id_that_is_not_an_id_is_a_422_not_a_page(stack: Stack) -> None:
    reply = httpx.get(f"{stack.url}/?list=a%20b")
    assert reply.status_code == 422
    assert "list" in reply.json()["message"]

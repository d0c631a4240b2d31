"""The second app's page in a real chromium: its panel, patched live by its own renderer,
and the generic parts (chart, event log) fed by the built-in projection."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.stack import Stack, send

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def inventory(service_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    running = Stack({**service_env, "IRONSTAR_APP": "tests.apps.inventory"}, tmp_path)
    yield running
    running.stop()


def test_the_inventory_panel_shows_new_items_live_and_the_log_every_event(
    inventory: Stack, open_page: Callable[[str], Page]
) -> None:
    page = open_page(f"{inventory.url}/")
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    expect(page).to_have_title("Ironstar · inventory")
    sku = f"sku{uuid.uuid4().hex[:8]}"
    send(inventory.url, "stock_item", sku, "register_item", {"name": "Bolt"})
    send(inventory.url, "stock_item", sku, "receive", {"quantity": 3})
    expect(page.locator(f"#stock #sku-{sku}")).to_have_count(1)  # the app's own patch
    expect(page.locator("#events")).to_contain_text("stock_received")  # the generic log
    expect(page.locator("#analytics .legend")).to_contain_text("item_registered", timeout=10_000)

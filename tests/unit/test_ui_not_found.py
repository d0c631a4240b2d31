"""A page part that does not exist is a 404 naming the ones that do."""

from __future__ import annotations

import pytest

from common.catalogue import Catalogue
from common.errors import NotFound
from gateway.dashboard import page as dashboard
from gateway.live import views as liveviews
from tests.apps import inventory


@pytest.fixture(autouse=True)
def _inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("common.catalogue._cached", Catalogue(inventory.app))


def test_an_unknown_panel_is_a_404_listing_the_known_panels() -> None:
    with pytest.raises(NotFound) as missing:
        dashboard._find("nope")
    assert missing.value.message == "no panel 'nope'; known: stock"


def test_an_unknown_live_view_is_a_404_listing_the_known_views() -> None:
    with pytest.raises(NotFound) as missing:
        liveviews.view("nope", "x")
    assert missing.value.message.startswith("no live view 'nope'/'x'; known: analytics/")
    assert liveviews.view("analytics", sorted(liveviews.ANALYTICS)[0]) is not None

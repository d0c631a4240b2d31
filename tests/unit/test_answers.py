"""Replies are bounded in bytes: a cut keeps a prefix of the longest list and says so."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import TooLarge
from projector.answers import budget, reply

ITEMS = st.lists(
    st.fixed_dictionaries({"todo_id": st.text(max_size=8), "text": st.text(max_size=300)}),
    max_size=60,
)


@given(items=ITEMS, as_list=st.booleans(), max_bytes=st.integers(2_000, 20_000))
def test_a_reply_fits_its_budget_and_keeps_a_marked_prefix(
    items: list[dict[str, str]], as_list: bool, max_bytes: int
) -> None:
    result: Any = items if as_list else {"list_id": "l", "items": items, "active": len(items)}
    body = reply(7, result, max_bytes)
    answer = msgspec.json.decode(body)
    assert len(body) <= max_bytes and answer["sequence"] == 7
    kept = answer["result"] if as_list else answer["result"]["items"]
    assert kept == items[: len(kept)]
    if "truncated" in answer:
        cut = answer["truncated"]
        assert cut["returned"] == len(kept) < cut["total"] == len(items)
        assert cut["field"] == (None if as_list else "items") and cut["max_bytes"] == max_bytes
    else:
        assert kept == items


def test_an_answer_with_nothing_to_cut_is_a_413() -> None:
    with pytest.raises(TooLarge) as refused:
        reply(1, {"text": "x" * 5_000}, 2_000)
    assert refused.value.detail["limit"] == "bytes"


def test_the_budget_stays_inside_the_servers_max_payload() -> None:
    assert budget(1_048_576, 1_000_000) == 1_000_000
    assert budget(65_536, 1_000_000) == 65_536 - 4096

"""Cyclic collection paused around catch-up batches (projector/collector.py): off inside,
restored after the last one leaves, whatever the body does."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

import pytest

from projector import collector


@pytest.fixture(autouse=True)
def collection_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_collection_is_off_inside_and_on_again_after_even_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError), collector.paused():
        assert not gc.isenabled()
        raise RuntimeError("the batch failed")
    assert gc.isenabled()


def test_collection_stays_off_until_the_last_of_two_threads_leaves() -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector.paused():
            inside.set()
            assert release.wait(10)

    thread = threading.Thread(target=other)
    with collector.paused():
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread is still applying its batch
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_collection_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    with collector.paused():
        pass
    assert not gc.isenabled()


def test_a_stretch_keeps_collection_off_across_catch_up_batches_until_released() -> None:
    stretch = collector.Stretch(every=100)
    stretch.hold(40)
    stretch.hold(40)
    assert not gc.isenabled() and stretch.events == 80
    stretch.release()
    assert gc.isenabled()
    stretch.release()  # twice: nothing held
    assert gc.isenabled()


def test_a_stretch_is_left_and_paused_again_after_its_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered: list[bool] = []
    pause = collector.paused

    def counted() -> contextlib.AbstractContextManager[None]:
        entered.append(gc.isenabled())  # on again between the two pauses
        return pause()

    monkeypatch.setattr(collector, "paused", counted)
    stretch = collector.Stretch(every=100)
    stretch.hold(100)
    stretch.hold(1)  # past `every`: left, then paused again
    assert entered == [True, True] and not gc.isenabled() and stretch.events == 1
    stretch.release()
    assert gc.isenabled()

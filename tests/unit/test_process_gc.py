"""A worker process's collector: its start-up frozen, a higher young threshold, a task module's own choice kept."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from yadtq.worker.process_gc import YOUNG_THRESHOLD, tune_worker_gc


@pytest.fixture(autouse=True)
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was: thresholds, enabled, nothing left frozen."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_start_up_is_frozen_and_the_young_threshold_raised() -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    kept = [[n] for n in range(1000)]  # alive at start-up: frozen, never examined again
    tune_worker_gc()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.isenabled()


def test_what_a_task_module_chose_at_import_is_kept() -> None:
    gc.set_threshold(YOUNG_THRESHOLD * 5, 20, 30)
    tune_worker_gc()
    assert gc.get_threshold() == (YOUNG_THRESHOLD * 5, 20, 30), "a higher threshold was lowered"
    gc.disable()
    tune_worker_gc()
    assert not gc.isenabled(), "a collector the task module disabled was enabled again"


def test_cycles_are_still_collected_once_enough_is_allocated() -> None:
    gc.set_threshold(700, 10, 10)
    tune_worker_gc()

    class Node:
        def __init__(self) -> None:
            self.me = self

    before = gc.get_count()[0]
    collected = []
    gc.callbacks.append(lambda phase, info: collected.append(info["generation"]) if phase == "stop" else None)
    try:
        for _ in range(YOUNG_THRESHOLD * 3):
            Node()
    finally:
        gc.callbacks.pop()
    assert collected, f"no collection in {YOUNG_THRESHOLD * 3} cyclic allocations (count was {before})"

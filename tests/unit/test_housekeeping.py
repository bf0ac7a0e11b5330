"""The loop's timed chores wait while a task runs (its outcome is stored first), within a bound."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from yadtq.config import Settings
from yadtq.worker import housekeeping
from yadtq.worker.housekeeping import Housekeeping


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def make(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> tuple[Housekeeping, dict[str, int]]:
    monkeypatch.setattr(housekeeping, "time", clock)
    calls = {"commit": 0, "tick": 0}

    def commit() -> None:
        calls["commit"] += 1

    def call(hook: str, *args: Any) -> None:
        calls["tick"] += hook == "on_tick"

    none: Any = None
    hk = Housekeeping(Settings(), "w", client=none, keys=none, live=none,
                      tracker=SimpleNamespace(drained=lambda: []),  # type: ignore[arg-type]
                      intake=none, placement=none,
                      outages=SimpleNamespace(down=True),  # type: ignore[arg-type]  # no Redis chores here
                      hooks=SimpleNamespace(call=call, notice=call),  # type: ignore[arg-type]
                      commit=commit, publish_snapshot=lambda: None, stopped=threading.Event(), started_at=0.0,
                      cancel_run=lambda task_id, fence: None)
    return hk, calls


def test_chores_wait_while_a_task_runs_then_run_once_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    hk, calls = make(clock, monkeypatch)
    hk.run(busy=False)
    assert calls == {"commit": 1, "tick": 1}
    clock.now += 0.06  # the commit is due again, but a task was just claimed
    hk.run(busy=True)
    assert calls == {"commit": 2, "tick": 2}  # the last chores ran longer ago than the bound: they run
    clock.now += 0.01
    hk.run(busy=True)
    assert calls == {"commit": 2, "tick": 2}  # deferred: the running task's outcome comes first
    hk.run(busy=False)
    assert calls == {"commit": 2, "tick": 3}  # idle again: the chores run (the commit is not due yet)


def test_a_worker_that_is_never_idle_still_gets_its_chores_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    hk, calls = make(clock, monkeypatch)
    for _ in range(100):  # 1 s of turns every 10 ms, a task always running
        hk.run(busy=True)
        clock.now += 0.01
    assert calls["commit"] == calls["tick"] >= 100 * 0.01 / (Housekeeping.BUSY_DEFER + 0.01)

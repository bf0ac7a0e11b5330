"""Cancelling tasks in-process: a real `Worker` on an in-memory task source, a real Redis.

A cancel ends the record `cancelled` at once; the worker hears of it through its command
list (taken twice a second) and interrupts the run the way a time limit would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from conftest import wait_for
from worker_harness import Harness, h  # noqa: F401  (the fixtures)

from yadtq.errors import TaskCancelled
from yadtq.task.registry import Registry
from yadtq.worker import Worker
from yadtq.worker import policies as worker_policies

started: dict[str, float] = {}
ended: dict[str, str] = {}  # tag -> how its function ended ("returned", "interrupted", "cancelled")
release = threading.Event()


def _registry() -> Registry:
    reg = Registry()

    @reg.task("slices")
    def slices(seconds: float, tag: str) -> str:
        started[tag] = time.monotonic()
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                time.sleep(0.02)  # short slices: the interrupt lands between them
        except TaskCancelled:
            ended[tag] = "interrupted"
            raise
        ended[tag] = "returned"
        return tag

    @reg.task("aslices")
    async def aslices(seconds: float, tag: str) -> str:
        started[tag] = time.monotonic()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            ended[tag] = "cancelled"
            raise
        ended[tag] = "returned"
        return tag

    @reg.task("one_at_a_time", max_concurrency=1)
    def one_at_a_time(seconds: float, tag: str) -> str:
        return str(slices(seconds, tag))

    @reg.task("stubborn")
    def stubborn(tag: str) -> str:
        started[tag] = time.monotonic()
        while not release.is_set():
            try:
                time.sleep(0.02)
            except TaskCancelled:
                ended[tag] = "ignored the cancel"
        return tag

    return reg


def start(h: Harness, **overrides: Any) -> Worker:  # noqa: F811
    s = h.settings.replace(**overrides) if overrides else h.settings
    w = Worker(s, _registry(), "W1", source=h.source)
    w.connect()
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    h.workers.append((w, t))
    return w


def _running(h: Harness, tid: str, tag: str) -> None:  # noqa: F811
    wait_for(lambda: tag in started and h.status(tid) == "processing", 10, 0.01, f"{tag} running")


@pytest.mark.parametrize("task", ["slices", "aslices"])
def test_cancelling_a_running_task_interrupts_it_and_it_ends_cancelled(h: Harness, task: str) -> None:  # noqa: F811
    h.source.assign([0, 1])
    w = start(h)
    tag = f"{task}-{h.settings.prefix}"
    tid = h.submit(task, 30.0, tag)
    _running(h, tid, tag)
    t0 = time.monotonic()
    rec = h.backend.cancel(tid, by="test")
    assert rec.status == "cancelled" and "cancelled by test while running on W1" in (rec.error or "")
    wait_for(lambda: tag in ended, 5, 0.01, "the run to be interrupted")
    assert ended[tag] == ("interrupted" if task == "slices" else "cancelled")
    assert time.monotonic() - t0 < 2.0, "the worker heard of the cancel late"
    wait_for(lambda: any(e["event"] == "task_cancelled" and e["task_id"] == tid for e in h.events()), 5,
             what="the task_cancelled event")
    assert h.backend.get(tid).status == "cancelled" and not w.dispatch.running, "the slot was not freed"
    fence = str(h.r.hget(h.backend.keys.task(tid), "fence"))
    assert w.claims.renew([(tid, fence)]) == [True], "a cancelled claim read as lost (a false warning)"
    assert w.failed == 0 and not w._stop.is_set()


def test_a_task_that_ignores_its_cancel_goes_the_hard_time_limit_way(h: Harness,  # noqa: F811
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(worker_policies.os, "_exit", exits.append)  # the real policy would end pytest
    release.clear()
    h.source.assign([0, 1])
    start(h)
    tag = f"stubborn-{h.settings.prefix}"
    tid = h.submit("stubborn", tag)
    _running(h, tid, tag)
    h.backend.cancel(tid, by="test")
    try:
        wait_for(lambda: exits, 5, 0.02, "the hard-limit path")
        assert exits == [worker_policies.EXIT_HARD_TIME_LIMIT] and ended[tag] == "ignored the cancel"
        [hard] = [e for e in h.events() if e["event"] == "worker_hard_limit"]
        assert (hard["task_id"], hard["reason"]) == (tid, "cancelled")
    finally:
        release.set()  # the thread cannot be stopped from outside: let it go
    wait_for(lambda: any(e["event"] == "task_cancelled" for e in h.events()), 5, what="the run's end")
    assert h.backend.get(tid).status == "cancelled"


def test_a_task_cancelled_before_it_starts_never_runs(h: Harness) -> None:  # noqa: F811
    h.source.assign([0])
    start(h, concurrency=1)
    blocker, victim = f"blocker-{h.settings.prefix}", f"victim-{h.settings.prefix}"
    first = h.submit("slices", 0.5, blocker, partition=0)
    waiting = h.submit("slices", 0.1, victim, partition=0)  # buffered behind the only slot
    _running(h, first, blocker)
    assert h.backend.cancel(waiting, by="test").status == "cancelled"
    after = h.submit("slices", 0.01, f"after-{h.settings.prefix}", partition=0)
    h.wait_done([first, after])
    wait_for(lambda: h.source.committed_offsets.get(0) == 3, 5, what="every record committed")
    rec = h.backend.get(waiting)
    assert victim not in started and (rec.status, rec.attempts, rec.started) == ("cancelled", 0, None)



def test_a_cancelled_run_gives_its_max_concurrency_slot_back_when_it_ends(h: Harness) -> None:  # noqa: F811
    h.source.assign([0, 1])
    start(h, lease=10.0)  # a count left to its lease would hold the slot for 10 s more
    first, second = f"limited1-{h.settings.prefix}", f"limited2-{h.settings.prefix}"
    running = h.submit("one_at_a_time", 30.0, first)
    _running(h, running, first)
    waiting = h.submit("one_at_a_time", 0.1, second)
    h.rounds_pass(5)
    assert second not in started, "max_concurrency=1 let a second run start"
    h.backend.cancel(running, by="test")
    t0 = time.monotonic()
    h.wait_done([waiting], timeout=8)
    assert time.monotonic() - t0 < 4.0, "the cancelled run's slot was held until its lease lapsed"

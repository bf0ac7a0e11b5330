"""The progress throttle and the argument checks of `current_task().progress`, without processes."""

from __future__ import annotations

import asyncio
import math

import pytest

from yadtq.store.progress import ProgressReport
from yadtq.task.progress import report_progress
from yadtq.task.registry import Registry, TaskContext, current_task
from yadtq.worker.progress import ProgressThrottle


def r(tid: str, fraction: float, message: str | None = None) -> ProgressReport:
    return ProgressReport(tid, "1", fraction, message)


def test_the_first_value_is_due_at_once_then_one_per_interval_the_latest_wins() -> None:
    t = ProgressThrottle(0.25)
    t.offer(r("a", 0.1))
    assert t.due(100.0) == [r("a", 0.1)]
    for i in range(1000):  # a tight loop within the interval: nothing is due, only the latest is kept
        t.offer(r("a", i / 1000))
    assert t.due(100.1) == []
    assert t.next_due() == pytest.approx(100.25)
    assert t.due(100.25) == [r("a", 0.999)]
    assert t.due(100.3) == [] and t.next_due() is None


def test_tasks_are_throttled_apart() -> None:
    t = ProgressThrottle(1.0)
    t.offer(r("a", 0.1))
    assert t.due(10.0) == [r("a", 0.1)]
    t.offer(r("a", 0.2))
    t.offer(r("b", 0.5))
    assert t.due(10.5) == [r("b", 0.5)]  # b never wrote: due at once; a waits for its interval
    assert t.due(11.0) == [r("a", 0.2)]


def test_finish_hands_over_the_value_held_back_and_forgets_the_task() -> None:
    t = ProgressThrottle(1.0)
    t.offer(r("a", 0.1))
    t.due(5.0)
    t.offer(r("a", 1.0, "done"))
    assert t.finish("a") == r("a", 1.0, "done")
    assert t.finish("a") is None and t.next_due() is None
    t.offer(r("a", 0.3))  # a later run of the same id starts afresh: due at once
    assert t.due(5.1) == [r("a", 0.3)]


@pytest.mark.parametrize("bad", [-0.1, 1.01, math.nan, "0.5", True, None])
def test_a_fraction_outside_zero_to_one_is_refused(bad: object) -> None:
    got: list[tuple[float, str | None]] = []
    with pytest.raises(ValueError, match="between 0 and 1"):
        report_progress(lambda f, m: got.append((f, m)), bad, None)  # type: ignore[arg-type]
    assert got == []


def test_reports_reach_the_sink_and_need_none_outside_a_worker() -> None:
    got: list[tuple[float, str | None]] = []
    TaskContext("t1", "x", 1, "W", lambda f, m: got.append((f, m))).progress(0.4, "resizing")
    TaskContext("t2", "x", 1, "W").progress(1)  # no reporter: checked, then nothing
    assert got == [(0.4, "resizing")]
    with pytest.raises(TypeError):
        TaskContext("t3", "x", 1, "W").progress(0.5, 7)  # type: ignore[arg-type]


def test_current_task_inside_an_async_def_task() -> None:
    reg = Registry()

    @reg.task("a")
    async def a() -> str | None:
        await asyncio.sleep(0)
        ctx = current_task()
        return None if ctx is None else ctx.task_id

    task = reg.get("a")
    assert asyncio.run(task.run([], {}, TaskContext("t-async", "a", 1, "W"))) == "t-async"
    assert current_task() is None


def test_status_and_follow_show_progress_as_a_bar() -> None:
    from yadtq.cli.display import record_details
    from yadtq.cli.follow import change_line
    from yadtq.store.backend import TaskRecord

    rec = TaskRecord("t1", "resize", "processing", attempts=1, worker="W1", submitted=100.0, started=101.0,
                     progress=0.25, progress_message="resizing")
    assert "  progress   [#####...............]  25%  resizing" in record_details(rec, [], now=102.0)
    assert change_line(rec, at=0.0).endswith("processing  [#####...............]  25%  resizing")
    done = TaskRecord("t1", "resize", "success", result=3, progress=1.0)
    assert change_line(done, at=0.0).endswith("success     result=3")

"""Rate and concurrency limits on a real Redis with in-process workers (an in-memory task source).

What each limit promises: a rate never exceeded in any 1-second window by more than one start
per worker; max_concurrency never exceeded, farm-wide, even by runs longer than the lease; the
concurrency of a worker that died comes back when its lease lapses; an unlimited task is not held
back while a limited one is saturated.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from yadtq.config import Settings
from yadtq.store.backend import Backend
from yadtq.store.claims import Claim, ClaimPipeline, Parked, Run
from yadtq.store.connection import connect_redis
from yadtq.store.keys import Keys
from yadtq.store.limits import LimitStore
from yadtq.task.messages import TaskMessage
from yadtq.task.registry import Registry
from yadtq.worker import MemorySource, Worker
from yadtq.worker.records import TaskWork


class Farm:
    """Workers in threads, each with its own one-partition source; the tasks note their starts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.r = connect_redis(settings)
        self.backend = Backend(self.r, settings)
        self.starts: list[tuple[str, float]] = []
        self.peak = 0
        self.lock = threading.Lock()
        self.sources: list[MemorySource] = []
        self.workers: list[tuple[Worker, threading.Thread]] = []

    def registry(self) -> Registry:
        reg = Registry()
        counter = self.settings.prefix + "test:running"

        def note(name: str) -> None:
            with self.lock:
                self.starts.append((name, time.monotonic()))

        @reg.task("tick")  # limited at run time by the test
        def tick() -> None:
            note("tick")

        @reg.task("scarce", max_concurrency=2)
        def scarce(seconds: float) -> None:
            note("scarce")
            now = self.r.incr(counter)  # counted in Redis, as a farm would count it
            with self.lock:
                self.peak = max(self.peak, now)
            time.sleep(seconds)
            self.r.decr(counter)

        @reg.task("slow2", rate_limit="2/s")
        def slow2() -> None:
            note("slow2")

        @reg.task("add")
        def add(x: int, y: int) -> int:
            note("add")
            return x + y

        return reg

    def worker(self, name: str, source: MemorySource | None = None) -> MemorySource:
        source = source or MemorySource(1)
        source.assign([0])
        w = Worker(self.settings, self.registry(), name, source=source)
        w.connect()
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        self.sources.append(source)
        self.workers.append((w, t))
        return source

    def submit(self, source: MemorySource, task: str, *args: Any) -> str:
        m = TaskMessage(uuid.uuid4().hex, task, args, {}, None, time.time(), None, None)
        self.backend.record_queued([m], self.settings.tries)
        source.append(m.encode(), None, 0)
        return m.task_id

    def status(self, task_id: str) -> str:
        return self.backend.get(task_id).status

    def wait_done(self, ids: list[str], timeout: float = 20) -> None:
        wait_for(lambda: all(self.status(i) == "success" for i in ids), timeout, what=f"{len(ids)} tasks done")

    def stop(self) -> None:
        for w, _ in self.workers:
            w.stop()
        for _, t in self.workers:
            t.join(timeout=15)
        self.r.close()


@pytest.fixture
def farm(redis_url: str, tmp_path: Path) -> Iterator[Farm]:
    settings = Settings(redis_url=redis_url, prefix=f"l{uuid.uuid4().hex[:8]}:", topic="tasks", partitions=1,
                        log_dir=str(tmp_path), concurrency=4, lease=0.6, max_buffered=200)
    f = Farm(settings)
    yield f
    f.stop()


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times))


def test_a_rate_set_at_run_time_holds_in_every_second_across_two_workers(farm: Farm) -> None:
    LimitStore(farm.r, farm.settings).set("tick", rate_limit="30/s")
    a, b = farm.worker("A"), farm.worker("B")
    ids = [farm.submit(src, "tick") for src in (a, b) for _ in range(30)]
    farm.wait_done(ids)
    starts = [t for n, t in farm.starts if n == "tick"]
    assert most_in_one_second(starts) <= 30 + 2, "over the rate by more than one start per worker"
    assert max(starts) - min(starts) >= 59 / 30 - 0.1, "60 starts at 30/s went faster than the rate"


def test_max_concurrency_holds_farm_wide_even_for_runs_longer_than_the_lease(farm: Farm) -> None:
    a, b = farm.worker("A"), farm.worker("B")
    ids = [farm.submit(a, "scarce", 1.5)]  # 1.5 s with a 0.6 s lease: renewed, still counted
    ids += [farm.submit(src, "scarce", 0.1) for src in (a, b) for _ in range(6)]
    farm.wait_done(ids)
    assert farm.peak == 2
    rows = {row["task"]: row for row in LimitStore(farm.r, farm.settings).all()}
    assert rows["scarce"]["max_concurrency"] == 2 and rows["scarce"]["max_concurrency_from"] == "code"
    assert rows["scarce"]["running"] == 0, "a finished run still counted"


def test_a_dead_holders_concurrency_comes_back_when_its_lease_lapses(farm: Farm) -> None:
    s = farm.settings
    LimitStore(farm.r, s).set("scarce", max_concurrency=1)
    dead = ClaimPipeline(farm.r, s, "dead", "dead:1")
    held = TaskMessage(uuid.uuid4().hex, "scarce", (0.1,), {}, None, time.time(), None, None)
    farm.backend.record_queued([held], s.tries)
    _, [verdict] = dead.step([], [Claim(TaskWork(held, held.digest), 0, 0)])
    assert isinstance(verdict, Run)  # claimed by a worker that then dies: never renewed, no outcome
    claimed_at = time.monotonic()
    a = farm.worker("A")
    task = farm.submit(a, "scarce", 0.01)
    farm.wait_done([task], timeout=10)
    started = [t for n, t in farm.starts if n == "scarce"]
    assert started and started[0] - claimed_at >= s.lease - 0.05, "ran beside a live holder of the only slot"


def test_an_unlimited_task_is_not_held_back_while_a_limited_one_is_saturated(farm: Farm) -> None:
    a = farm.worker("A")
    limited = [farm.submit(a, "slow2") for _ in range(20)]  # ahead of the others in the same partition
    free = [farm.submit(a, "add", i, 1) for i in range(40)]
    farm.wait_done(free, timeout=5)
    waiting = sum(1 for i in limited if farm.status(i) == "queued")
    assert waiting >= 15, "the limited ones ran faster than 2/s"


def test_a_limited_backlog_larger_than_the_buffer_does_not_hold_back_its_partition(
        redis_url: str, tmp_path: Path) -> None:
    # A backlog of a 10/s task three times the buffer, then unlimited tasks in the same partition:
    # the over-limit ones must leave the buffer (wait in Redis for their start), or they fill it,
    # the partition is paused and the unlimited ones wait for the backlog to drain (6 s here).
    settings = Settings(redis_url=redis_url, prefix=f"l{uuid.uuid4().hex[:8]}:", topic="tasks", partitions=1,
                        log_dir=str(tmp_path), concurrency=4, lease=0.6, max_buffered=20)
    farm = Farm(settings)
    try:
        LimitStore(farm.r, settings).set("tick", rate_limit="10/s")
        a = farm.worker("A")
        limited = [farm.submit(a, "tick") for _ in range(60)]
        free = [farm.submit(a, "add", i, 1) for i in range(20)]
        farm.wait_done(free, timeout=3)
        waiting = [i for i in limited if farm.status(i) == "queued"]
        assert len(waiting) >= 30, "the limited ones ran faster than 10/s"
        farm.wait_done(limited, timeout=20)  # none lost while waiting outside the partition
        assert sum(1 for n, _ in farm.starts if n == "tick") == 60, "a limited task ran twice"
        starts = [float(r.started) for r in farm.backend.get_many(limited) if r.started is not None]
        assert most_in_one_second(starts) <= 10 + 1, "over the rate by more than one start (Redis time, claimed)"
    finally:
        farm.stop()


def test_a_task_parked_over_its_rate_runs_once_when_its_worker_died_before_committing_past_it(farm: Farm) -> None:
    s = farm.settings
    LimitStore(farm.r, s).set("tick", rate_limit="1/s")
    first, second = (TaskMessage(uuid.uuid4().hex, "tick", (), {}, None, time.time(), None, None) for _ in range(2))
    farm.backend.record_queued([first, second], s.tries)
    dead = ClaimPipeline(farm.r, s, "dead", "dead:1")
    _, verdicts = dead.step([], [Claim(TaskWork(m, m.digest), 0, i, park=True) for i, m in enumerate((first, second))])
    assert isinstance(verdicts[0], Run) and isinstance(verdicts[1], Parked), verdicts
    # Its worker dies before committing past it: the broker hands the same record to the next owner,
    # beside the copy published again from Redis just before its booked start.
    a = farm.worker("A")
    a.append(second.encode(), None, 0)
    farm.wait_done([second.task_id], timeout=10)
    worker = farm.workers[0][0]
    wait_for(lambda: worker.tracker.buffered() == 0 and farm.r.zscore(Keys(s.prefix).retries, second.task_id) is None,
             10, what="both copies dealt with")
    assert [n for n, _ in farm.starts] == ["tick"], "the parked task ran twice (or the dead worker's ran here)"


def test_a_concurrency_limited_backlog_larger_than_the_buffer_does_not_hold_back_its_partition(
        redis_url: str, tmp_path: Path) -> None:
    settings = Settings(redis_url=redis_url, prefix=f"l{uuid.uuid4().hex[:8]}:", topic="tasks", partitions=1,
                        log_dir=str(tmp_path), concurrency=4, lease=0.6, max_buffered=20)
    farm = Farm(settings)
    try:
        a = farm.worker("A")
        limited = [farm.submit(a, "scarce", 0.1) for _ in range(60)]  # 2 at a time: about 3 s
        free = [farm.submit(a, "add", i, 1) for i in range(20)]
        farm.wait_done(free, timeout=2)
        assert sum(1 for i in limited if farm.status(i) == "queued") >= 30, "ran more than 2 at a time"
        farm.wait_done(limited, timeout=20)  # none lost while parked outside the partition
        assert sum(1 for n, _ in farm.starts if n == "scarce") == 60, "a limited task ran twice"
        assert farm.peak == 2
    finally:
        farm.stop()


def test_a_task_parked_over_its_concurrency_limit_is_woken_when_a_place_frees(
        redis_url: str, tmp_path: Path) -> None:
    # A backlog of a max_concurrency=2 task larger than half the buffer: the over-limit ones are
    # parked in Redis for a lease (8 s here). Each run that ends must wake one of them, so the
    # backlog drains at the pace of its runs, well before a lease.
    settings = Settings(redis_url=redis_url, prefix=f"l{uuid.uuid4().hex[:8]}:", topic="tasks", partitions=1,
                        log_dir=str(tmp_path), concurrency=4, lease=8.0, max_buffered=20)
    farm = Farm(settings)
    try:
        a = farm.worker("A")
        limited = [farm.submit(a, "scarce", 0.05) for _ in range(24)]
        submitted = time.monotonic()
        farm.wait_done(limited, timeout=settings.lease - 1)
        assert time.monotonic() - submitted < settings.lease - 1
        events = [text for i in limited for _, text in farm.backend.events(i)]
        assert any("over its concurrency limit" in e for e in events), "nothing was parked: the test tests nothing"
        assert any("place under its concurrency limit freed" in e for e in events)
        assert farm.peak == 2
        assert sum(1 for n, _ in farm.starts if n == "scarce") == 24, "a limited task ran twice"
    finally:
        farm.stop()


def test_a_run_given_back_wakes_a_task_parked_over_its_concurrency_limit(farm: Farm) -> None:
    s = farm.settings
    LimitStore(farm.r, s).set("scarce", max_concurrency=1)
    holder = ClaimPipeline(farm.r, s, "W", "W:1")
    first, second = (TaskMessage(uuid.uuid4().hex, "scarce", (0.1,), {}, None, time.time(), None, None)
                     for _ in range(2))
    farm.backend.record_queued([first, second], s.tries)
    _, [run] = holder.step([], [Claim(TaskWork(first, first.digest), 0, 0)])
    _, [parked] = holder.step([], [Claim(TaskWork(second, second.digest), 0, 1, park=True)])
    assert isinstance(run, Run) and isinstance(parked, Parked), (run, parked)
    retries = Keys(s.prefix).retries

    def redis_now() -> float:
        sec, usec = farm.r.time()
        return float(sec) + usec / 1e6

    assert float(farm.r.zscore(retries, second.task_id) or 0) > redis_now() + s.lease / 2
    assert holder.release(first.task_id, run.fence, started=True)  # a stopping worker gives its run back
    now = redis_now()
    assert float(farm.r.zscore(retries, second.task_id) or 0) <= now, "still parked for a lease"
    assert float(farm.r.hget(Keys(s.prefix).task(second.task_id), "due") or 0) <= now


def test_a_task_held_for_its_booked_start_holds_back_its_partitions_commit_until_it_ran(farm: Farm) -> None:
    LimitStore(farm.r, farm.settings).set("tick", rate_limit="1/s")
    a = farm.worker("A")
    ticks = [farm.submit(a, "tick") for _ in range(3)]  # offsets 0-2: starts booked 1 s apart, held in the buffer
    free = [farm.submit(a, "add", i, 1) for i in range(10)]  # offsets 3-12
    farm.wait_done(free, timeout=5)
    assert farm.status(ticks[2]) == "queued"
    committed = a.committed_offsets.get(0, 0)
    assert farm.status(ticks[2]) == "queued", "the test was too slow to see it held"
    assert committed <= 2, f"committed past a record still held for its start ({committed})"
    farm.wait_done(ticks, timeout=10)
    wait_for(lambda: a.committed_offsets.get(0) == 13, 5, what="committed past everything once it ran")

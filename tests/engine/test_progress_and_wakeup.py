"""Progress and pushed results in-process: a real `Worker` on a `MemorySource`, a real Redis.

What only these show: `current_task().progress` of sync and `async def` tasks lands in the
record, a cut-off run cannot write it, and `YADTQ.wait` wakes on the announcement of the
outcome (not on its polling), also after a Redis restart broke its subscription.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_for

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import free_port
from yadtq.ops.services import start_redis
from yadtq.store.announcements import pushed_record
from yadtq.store.backend import Backend, TaskRecord
from yadtq.store.connection import connect_redis
from yadtq.task.messages import TaskMessage
from yadtq.task.registry import Registry, current_task
from yadtq.worker import MemorySource, Worker


class Gates:
    """One event per task tag: a task reports its progress, then holds until the test opens its gate."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.seen: dict[str, Any] = {}

    def gate(self, tag: str) -> threading.Event:
        return self.gates.setdefault(tag, threading.Event())


def make_registry(g: Gates) -> Registry:
    reg = Registry()

    @reg.task("steps")
    def steps(tag: str, n: int) -> int:
        ctx = current_task()
        assert ctx is not None
        for i in range(n):  # a tight loop: the writer stores a few of these, the last one for sure
            ctx.progress((i + 1) / n / 2, f"step {i + 1} of {n}")
        g.gate(tag).wait(20)
        ctx.progress(1.0, "done")
        return n

    @reg.task("asteps")
    async def asteps(tag: str, n: int) -> int:
        ctx = current_task()
        g.seen[tag] = None if ctx is None else ctx.task_id
        assert ctx is not None
        for i in range(n):
            ctx.progress((i + 1) / n / 2, f"async step {i + 1}")
        while not g.gate(tag).is_set():
            await asyncio.sleep(0.01)
        ctx.progress(1.0, "async done")
        return n

    @reg.task("hold")
    def hold(tag: str) -> str:
        g.gate(tag).wait(20)
        return tag

    return reg


class Farm:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gates = Gates()
        self.source = MemorySource(1)
        self.source.assign([0])
        self.r = connect_redis(settings)
        self.backend = Backend(self.r, settings)
        self.worker = Worker(settings, make_registry(self.gates), "W1", source=self.source)
        self.worker.connect()
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def submit(self, task: str, *args: Any) -> str:
        m = TaskMessage(uuid.uuid4().hex, task, args, {}, 1, time.time(), None, None)
        self.backend.record_queued([m], 1)
        self.source.append(m.encode(), m.task_id.encode(), 0)
        return m.task_id

    def stop(self) -> None:
        for gate in self.gates.gates.values():
            gate.set()
        self.worker.stop()
        self.thread.join(timeout=15)
        self.r.close()


def _settings(redis_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(redis_url=redis_url, prefix=f"u{uuid.uuid4().hex[:8]}:", partitions=1, log_dir=str(tmp_path),
                    concurrency=4, lease=2.0, tries=1, **extra)


@pytest.fixture
def farm(redis_url: str, tmp_path: Path) -> Iterator[Farm]:
    f = Farm(_settings(redis_url, tmp_path, progress_interval=0.1))
    yield f
    f.stop()


@pytest.mark.parametrize("task", ["steps", "asteps"])
def test_progress_of_sync_and_async_tasks_lands_in_the_record(farm: Farm, task: str) -> None:
    tag = f"{task}-1"
    tid = farm.submit(task, tag, 500)
    # The last value of the tight loop lands although most are held back (throttled).
    rec = wait_for(lambda: (r := farm.backend.get(tid)).progress == 0.5 and r, 10, 0.02, "the last value to land")
    assert rec.status == "processing"
    assert rec.progress_message == ("step 500 of 500" if task == "steps" else "async step 500")
    writes = farm.r.hget(farm.backend.keys.task(tid), "progress_at")
    assert writes is not None
    farm.gates.gate(tag).set()
    done = wait_for(lambda: (r := farm.backend.get(tid)).done and r, 10, 0.02, "the task to finish")
    assert done.status == "success" and done.result == 500
    # The value reported just before returning is stored before the outcome.
    assert done.progress == 1.0 and done.progress_message in ("done", "async done")
    if task == "asteps":
        assert farm.gates.seen[tag] == tid, "current_task() inside an async def task"


def test_a_tight_loop_costs_a_few_writes_per_second(farm: Farm) -> None:
    tid = uuid.uuid4().hex
    sub = farm.r.pubsub()
    sub.subscribe(farm.backend.keys.changes(tid))
    m = TaskMessage(tid, "steps", ("tight", 100_000), {}, 1, time.time(), None, None)
    began = time.monotonic()
    farm.backend.record_queued([m], 1)
    farm.source.append(m.encode(), tid.encode(), 0)
    writes = 0
    deadline = began + 20
    while farm.backend.get(tid).progress != 0.5 and time.monotonic() < deadline:
        msg = sub.get_message(timeout=0.05)
        writes += bool(msg and msg["type"] == "message" and msg["data"] == "progress")
    took = time.monotonic() - began  # every write of the loop happened within this
    while (msg := sub.get_message(timeout=0.2)) is not None:  # announcements still in flight
        writes += msg["type"] == "message" and msg["data"] == "progress"
    sub.close()
    farm.gates.gate("tight").set()
    # 100,000 reports; the writer stores one per 0.1 s (progress_interval) at most. (Gaps between
    # announcements as received are no measure: a loaded machine delivers them in bunches.)
    assert 1 <= writes <= 1 + took / 0.1, (writes, took)


def test_a_cut_off_run_cannot_write_progress(farm: Farm) -> None:
    tid = farm.submit("steps", "fenced", 3)
    wait_for(lambda: farm.backend.get(tid).progress == 0.5, 10, 0.02, "the first values")
    # Another owner took the task over (as after this worker froze past its lease): the fence moves on.
    key = farm.backend.keys.task(tid)
    farm.r.hincrby(key, "fence", 1)
    farm.r.hset(key, mapping={"progress": "0.25", "progress_message": "the new run"})
    farm.gates.gate("fenced").set()  # the old run reports 1.0 "done", then its outcome is fenced
    wait_for(lambda: farm.worker.dispatch.done + farm.worker.dispatch.failed >= 1 or
             not farm.worker.dispatch.running, 10, 0.02, "the old run to end")
    rec = farm.backend.get(tid)
    assert (rec.progress, rec.progress_message, rec.status) == (0.25, "the new run", "processing")


def test_wait_wakes_on_the_announcement_not_the_poll(farm: Farm) -> None:
    q = YADTQ(farm.settings.replace(result_poll=10.0), create_topic=False)
    try:
        tid = farm.submit("hold", "wake")
        wait_for(lambda: farm.backend.get(tid).status == "processing", 10, 0.02, "the task to start")
        got: dict[str, Any] = {}

        def waiter() -> None:
            got["result"] = q.result(tid, timeout=30)
            got["at"] = time.monotonic()
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.3)  # the waiter reads `processing` and blocks on its subscription (poll: 10 s)
        assert t.is_alive()
        released = time.monotonic()
        farm.gates.gate("wake").set()
        t.join(timeout=8)
        assert not t.is_alive() and got["result"] == "wake"
        assert got["at"] - released < 2.0, "woken by the announcement, well before the 10 s poll"
    finally:
        q.close()


def test_a_final_outcome_is_pushed_with_its_record_so_wait_reads_nothing_more(farm: Farm) -> None:
    q = YADTQ(farm.settings.replace(result_poll=10.0), create_topic=False)
    reads: list[float] = []
    get = q.backend.get

    def counted(task_id: str) -> Any:
        reads.append(time.monotonic())
        return get(task_id)
    q.backend.get = counted  # type: ignore[method-assign]
    try:
        tid = farm.submit("hold", "pushed")
        wait_for(lambda: farm.backend.get(tid).status == "processing", 10, 0.02, "the task to start")
        got: dict[str, Any] = {}
        t = threading.Thread(target=lambda: got.setdefault("rec", q.wait(tid, timeout=30)))
        t.start()
        wait_for(lambda: reads, 10, 0.01, "the waiter's first read")
        time.sleep(0.2)  # subscribed and blocked on its subscription (poll: 10 s)
        released = time.monotonic()
        farm.gates.gate("pushed").set()
        t.join(timeout=8)
        assert not t.is_alive() and got["rec"] == farm.backend.get(tid) and got["rec"].result == "pushed"
        assert [r for r in reads if r >= released] == [], "returned the record the announcement carried"
    finally:
        q.close()
    # Any other payload (a bare status, a progress cue, a foreign text) means: read the record.
    assert [pushed_record("x", p) for p in (None, "success", "progress", "success {", "processing []")] == [None] * 5
    assert pushed_record("x", 'success ["status","success","task","add","result","3"]') == \
        TaskRecord("x", "add", "success", result=3)


def test_wait_falls_back_to_polling_across_a_redis_restart(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis("127.0.0.1", port, tmp_path / "data", tmp_path / "logs")
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: redis.Redis.from_url(url).ping(), 10, 0.05, "Redis")
    settings = _settings(url, tmp_path, result_poll=0.3)
    r = redis.Redis.from_url(url, decode_responses=True)
    backend = Backend(r, settings)
    m = TaskMessage("restart-1", "hold", ("x",), {}, 1, time.time(), None, None)
    backend.record_queued([m], 1)
    q = YADTQ(settings, create_topic=False)
    got: dict[str, Any] = {}
    t = threading.Thread(target=lambda: got.setdefault("rec", q.wait(m.task_id, timeout=60)))
    try:
        t.start()
        time.sleep(0.3)  # subscribed, waiting
        proc.kill()
        proc.wait(timeout=10)
        proc = start_redis("127.0.0.1", port, tmp_path / "data", tmp_path / "logs")
        wait_for(lambda: _answers(r), 20, 0.05, "Redis back")
        time.sleep(0.5)  # the waiter has met the broken subscription and polls
        # The outcome stored while nobody is subscribed: no announcement reaches the waiter.
        r.hset(backend.keys.task(m.task_id), mapping={"status": "success", "result": "1"})
        t.join(timeout=10)
        assert not t.is_alive(), "the waiter polled the record after its subscription broke"
        assert got["rec"].status == "success"
    finally:
        q.close()
        r.close()
        proc.terminate()
        proc.wait(timeout=10)


def _answers(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False

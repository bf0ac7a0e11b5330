"""The in-process worker harness of the engine tests: an in-memory task source, a real Redis, real
`Worker`s on threads, and tasks that note every run of theirs (`Ledger`). The fixture `h` gives one."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from yadtq.config import Settings
from yadtq.store.backend import Backend
from yadtq.store.connection import connect_redis
from yadtq.task.messages import TaskMessage
from yadtq.task.outcomes import Fail, Retry
from yadtq.task.registry import Registry
from yadtq.worker import MemorySource, Worker
from yadtq.worker.middleware import Middleware


class Ledger:
    """Every execution of every task, as the tasks themselves record it."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()  # holds a "gated" task until the test opens it

    def add(self, name: str, start: float) -> None:
        with self.lock:
            self.runs.append((name, start, time.monotonic()))


def make_registry(ledger: Ledger) -> Registry:
    reg = Registry()

    @reg.task("add")
    def add(x: int, y: int) -> int:
        return x + y

    @reg.task("sleep")
    def sleep(seconds: float, tag: str = "") -> str:
        start = time.monotonic()
        time.sleep(seconds)
        ledger.add(tag or f"sleep{seconds}", start)
        return tag

    @reg.task("gated")
    def gated(tag: str) -> str:
        start = time.monotonic()
        ledger.gate.wait(30)
        ledger.add(tag, start)
        return tag

    @reg.task("flaky")
    def flaky(tag: str) -> str:
        with ledger.lock:
            seen = sum(1 for r in ledger.runs if r[0] == tag)
        ledger.add(tag, time.monotonic())
        if seen == 0:
            raise Retry("first try fails", delay=0.3)
        return "ok"

    @reg.task("boom")
    def boom(kind: str) -> None:
        if kind == "exit":
            raise SystemExit(0)
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "fail":
            raise Fail("no point retrying")
        raise ValueError("bad value")

    @reg.task("result")
    def result(kind: str) -> Any:
        return {"nan": float("nan"), "big": "x" * 5000, "set": {1}}[kind]

    @reg.task("spin", time_limit=0.3)
    def spin() -> None:
        while True:
            pass

    @reg.task("asleep")
    async def asleep(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @reg.task("anap")
    async def anap(seconds: float, tag: str) -> str:
        start = time.monotonic()
        await asyncio.sleep(seconds)
        ledger.add(tag, start)
        return tag

    return reg


class CountingSource(MemorySource):
    """Counts the worker's commit rounds (one `remember_lows` call each, committing or not), so that a
    test can wait until the worker has had its chances to do something rather than sleep."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.commit_rounds = 0

    def remember_lows(self, lows: dict[int, int]) -> None:
        self.commit_rounds += 1


class Harness:
    def __init__(self, settings: Settings, source: CountingSource, ledger: Ledger) -> None:
        self.settings = settings
        self.source = source
        self.ledger = ledger
        self.r = connect_redis(settings)  # a RedisCluster client on a redis+cluster:// URL (test_redis_cluster_engine)
        self.backend = Backend(self.r, settings)
        self.workers: list[tuple[Worker, threading.Thread]] = []

    def worker(self, name: str = "W1", source: MemorySource | None = None,
               middleware: Sequence[Middleware] = (), **overrides: Any) -> Worker:
        s = self.settings.replace(**overrides) if overrides else self.settings
        w = Worker(s, make_registry(self.ledger), name, source=source or self.source, middleware=middleware)
        w.connect()
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        self.workers.append((w, t))
        return w

    def submit(self, task: str, *args: Any, key: str | None = None, task_id: str | None = None,
               tries: int | None = None, partition: int | None = None, token: str = "", **kwargs: Any) -> str:
        m = TaskMessage(task_id or uuid.uuid4().hex, task, args, kwargs, tries, time.time(), None, key)
        self.backend.record_queued([m], self.settings.tries, token=token)
        self.source.append(m.encode(), (key or m.task_id).encode(), partition)
        return m.task_id

    def status(self, task_id: str) -> str:
        return self.backend.get(task_id).status

    def rounds_pass(self, n: int = 3) -> None:
        """Waits until the worker has run `n` more commit rounds (one every 0.05 s while it loops)."""
        until = self.source.commit_rounds + n
        wait_for(lambda: self.source.commit_rounds >= until, 10, 0.01, f"{n} commit rounds of the worker")

    def events(self, name: str = "W1") -> list[dict[str, Any]]:
        """The worker's event stream so far (it flushes the file on every poll)."""
        path = Path(self.settings.log_dir) / f"worker-{name}.events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]

    def wait_done(self, ids: list[str], timeout: float = 20) -> None:
        wait_for(lambda: all(self.status(i) in ("success", "failed") for i in ids), timeout,
                 what=f"{len(ids)} tasks finished")

    def stop(self) -> None:
        for w, t in self.workers:
            w.stop()
            t.join(timeout=15)
        self.r.close()


@pytest.fixture
def h(redis_url: str, tmp_path: Path) -> Iterator[Harness]:
    u = uuid.uuid4().hex[:8]
    settings = Settings(redis_url=redis_url, prefix=f"u{u}:", topic="tasks", partitions=2, log_dir=str(tmp_path),
                        concurrency=4, lease=2.0, retry_backoff=0.2, max_buffered=50, time_limit_grace=0.5,
                        max_result_bytes=1000)
    source = CountingSource(2)
    harness = Harness(settings, source, Ledger())
    yield harness
    harness.stop()

"""The Celery 5 side: one private Redis (broker and result backend) for the whole run, a worker per setup."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Stalled, percentile, stop, wait_until
from yadtq.ops.ports import free_port
from yadtq.ops.services import start_redis


def done_at(result: Any) -> float:
    """When the result backend stored the outcome (Celery stores naive UTC on some paths)."""
    when: dt.datetime = result.date_done
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


class CeleryRig:
    """One Redis for the whole run (Celery caches its connections per process); `start` (re)starts
    the worker with a pool, a concurrency and a prefetch multiplier."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="celery-bench-"))
        self.redis = start_redis("127.0.0.1", self.port, self.base / "data", self.base / "logs")
        os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{self.port}/0"
        from bench import celery_app
        self.app = celery_app
        self.worker: subprocess.Popen[bytes] | None = None
        self.setup = ""

    def start(self, pool: str = "prefork", concurrency: int = 2, prefetch: int = 4) -> None:
        setup = f"{pool} {concurrency} prefetch {prefetch}"
        if self.worker is not None and self.setup == setup:
            return
        self.stop_worker()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # Its own session: the prefork pool's children die with it.
        self.worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
                                        "--pool", pool, "--concurrency", str(concurrency),
                                        "--prefetch-multiplier", str(prefetch), "--loglevel", "WARNING",
                                        "--without-gossip", "--without-mingle", "--without-heartbeat"],
                                       cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        self.setup = setup
        self.app.add.delay(0, 0).get(timeout=60)

    def stop_worker(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
            self.worker = None

    def close(self) -> None:
        self.stop_worker()
        stop([self.redis])
        shutil.rmtree(self.base, ignore_errors=True)


def wait_ready(results: list[Any], timeout: float, stall_s: float = 60.0) -> None:
    """Polls until every result is ready (the polling is not timed: finishes come from `date_done`);
    raises `Stalled` when none got ready for `stall_s`, or at `timeout`."""
    pending = results
    start = last_move = time.monotonic()
    while pending:
        time.sleep(0.2)
        still = [r for r in pending if not r.ready()]
        now = time.monotonic()
        if len(still) < len(pending):
            last_move = now
        pending = still
        if pending and (now - last_move > stall_s or now - start > timeout):
            raise Stalled(f"Celery: {len(results) - len(pending):,}/{len(results):,} ready, stuck for "
                          f"{now - last_move:.0f} s")


def throughput(rig: CeleryRig, n: int, concurrency: int = 2) -> dict[str, float]:
    """`n` add tasks, prefork pool: first submit to the newest `date_done`."""
    rig.start("prefork", concurrency, 4)
    started = time.time()
    t0 = time.perf_counter()
    results = [rig.app.add.apply_async((i, 1)) for i in range(n)]
    submitted = time.perf_counter() - t0
    wait_ready(results, 600)
    total = max(done_at(r) for r in results) - started
    return {"tasks": n, "submit_per_s": n / submitted, "end_to_end_per_s": n / total}


def latency(rig: CeleryRig, n: int, rate: float) -> dict[str, float]:
    """Submit to `date_done` stored in the result backend, one apply_async at a time (prefork 2)."""
    rig.start("prefork", 2, 4)
    sent = []
    submit = []
    t_next = time.perf_counter()
    for i in range(n):
        t_next += 1 / rate
        time.sleep(max(0.0, t_next - time.perf_counter()))
        before = time.time()
        sent.append((rig.app.add.apply_async((i, 1)), before))
        submit.append((time.time() - before) * 1000)
    wait_until(lambda: all(r.ready() for r, _ in sent), 120, 0.1)
    lat = [(done_at(r) - t) * 1000 for r, t in sent]
    return {"p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
            "submit_p50_ms": percentile(submit, 50), "submit_p99_ms": percentile(submit, 99)}

"""Workloads 2 and 3 on Celery 5 (prefork, concurrency 2), on its own private Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, percentile, stop, wait_until
from yadtq.services import free_port, start_redis


class CeleryRig:
    """One Redis and one Celery worker for the whole run (Celery caches its connections per process)."""

    def __init__(self) -> None:
        self.port = free_port()
        base = Path(tempfile.mkdtemp(prefix="celery-bench-"))
        self.redis = start_redis("127.0.0.1", self.port, base / "data", base / "logs")
        os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{self.port}/0"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
                                        "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
                                        "--without-gossip", "--without-mingle", "--without-heartbeat"],
                                       cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from bench.celery_app import add
        self.add = add
        self.add.delay(0, 0).get(timeout=60)

    def close(self) -> None:
        stop([self.worker, self.redis])


def throughput(rig: CeleryRig, n: int) -> dict[str, float]:
    started = time.time()
    t0 = time.perf_counter()
    results = [rig.add.apply_async((i, 1)) for i in range(n)]
    submitted = time.perf_counter() - t0
    pending = results
    while pending:  # checking is not timed: the finish is the newest `date_done` stored
        time.sleep(0.5)
        pending = [r for r in pending if not r.ready()]
    total = max(r.date_done.timestamp() for r in results) - started
    return {"tasks": n, "submit_per_s": n / submitted, "end_to_end_per_s": n / total}


def latency(rig: CeleryRig, n: int, rate: float) -> dict[str, float]:
    """Submit to `date_done` stored in the result backend, one apply_async at a time."""
    sent = []
    t_next = time.perf_counter()
    for i in range(n):
        t_next += 1 / rate
        time.sleep(max(0.0, t_next - time.perf_counter()))
        before = time.time()
        sent.append((rig.add.apply_async((i, 1)), before))
    wait_until(lambda: all(r.ready() for r, _ in sent), 120, 0.1)
    lat = [(r.date_done.timestamp() - t) * 1000 for r, t in sent]
    return {"p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99)}

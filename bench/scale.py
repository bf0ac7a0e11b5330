"""Scale: end-to-end `add` throughput with 1, 2 and 4 worker processes (Celery: prefork 1, 2, 4).

    .venv/bin/python bench/scale.py [--tasks 20000] [--workers 1 2 4] [--runs 3] [--yadtq-only]

The clock runs from the first submit to the last success stored, after every
worker has run a warm-up task (so each holds partitions). YADTQ workers run
with their default concurrency.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench.common import attempt, private_services, repeat, spawn_workers, stop, wait_for_count, workers_serving
from yadtq.client.client import YADTQ

PARTITIONS = 4  # as in the figures before issue 9, so the 2-worker figure stays comparable
BATCH = 2000


def yadtq_throughput(n: int, workers: int, redis: str = "fsync_always") -> dict[str, float]:
    """First submit to last success stored: `n` add tasks on `workers` worker processes, on a Redis
    with the named REDIS_SETTINGS (YADTQ's own by default)."""
    with private_services(partitions=PARTITIONS, redis=redis) as s:
        procs = spawn_workers(s, workers)
        try:
            with YADTQ(s) as q:
                serving = workers_serving(q, workers)
                before = q.backend.counts()["success"]
                t0 = time.perf_counter()
                for i in range(0, n, BATCH):
                    q.submit_many([("add", [j, 1]) for j in range(i, min(n, i + BATCH))])
                submitted = time.perf_counter() - t0
                wait_for_count(lambda: q.backend.counts()["success"], n + before, f"{n:,} add on {workers} worker(s)")
                total = time.perf_counter() - t0
        finally:
            stop(procs)
    return {"tasks": n, "submit_per_s": n / submitted, "end_to_end_per_s": n / total, "workers_serving": serving}


Table = dict[str, dict[str, dict[str, float]]]  # workers -> figure -> summary


def yadtq_run(n: int, workers: Sequence[int], runs: int, say: Any = print, redis: str = "fsync_always") -> Table:
    out: Table = {}
    words = "" if redis == "fsync_always" else f", Redis {redis.replace('_', ' ')}"
    for w in workers:
        out[str(w)] = fig = attempt(repeat, runs, yadtq_throughput, n, w, redis)
        say(f"  scale YADTQ {w} worker(s){words}: {describe(fig)}", flush=True)
    return out


def describe(fig: dict[str, Any]) -> str:
    if "error" in fig:
        return f"ERROR {fig['error']}"
    return f"{fig['end_to_end_per_s']['median']:,.0f} tasks/s (load {fig['load']['median']:.1f})"


def celery_run(rig: Any, n: int, workers: Sequence[int], runs: int, say: Any = print) -> Table:
    """Celery prefork with concurrency `workers` (its worker processes), prefetch 4."""
    from bench import celery_bench
    out: Table = {}
    for w in workers:
        out[str(w)] = fig = attempt(repeat, runs, celery_bench.throughput, rig, n, w)
        say(f"  scale Celery prefork {w}: {describe(fig)}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--celery-tasks", type=int, default=2_000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--yadtq-only", action="store_true")
    args = p.parse_args(argv)
    yadtq_run(args.tasks, args.workers, args.runs)
    if not args.yadtq_only:
        from bench import celery_bench
        rig = celery_bench.CeleryRig()
        try:
            celery_run(rig, args.celery_tasks, args.workers, args.runs)
            gc.collect()  # Celery's result objects talk to Redis when collected: before it stops
        finally:
            rig.close()


if __name__ == "__main__":
    main()

"""The mixed workload (issue 9): quick tasks among I/O waits, long tasks and retries.

    .venv/bin/python bench/mixed.py [--tasks 1000] [--slots 2 8] [--yadtq-only | --celery-only]

85% quick (`x + y`), 10% sleep 200 ms, 3% sleep 1 s, 2% fail on their first
attempt and succeed on a retry about 1 s later; shuffled with a fixed seed and
submitted at once. YADTQ runs it as processes x concurrency, Celery (Redis
broker, acks_late, prefetch 1) with prefork for 2 slots and threads for 8.
Figures: makespan (first submit to last success), the ideal (task sleep time
/ slots), and when the quick tasks completed (submit to success stored).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench.common import (
    attempt,
    load,
    percentile,
    private_services,
    spawn_workers,
    stop,
    wait_for_count,
    workers_serving,
)
from yadtq.client.client import YADTQ

PARTITIONS = 8  # enough for 8 single-slot processes
NAP_S, LONG_S = 0.2, 1.0
RETRY_DELAY_S = 1.0


@dataclass(frozen=True)
class Job:
    kind: str  # quick | nap | long | flaky
    task: str  # the task's name on both sides
    args: tuple[Any, ...]


def workload(n: int, seed: int = 9) -> list[Job]:
    """`n` jobs in the issue's proportions (rounded, the rest quick), shuffled with `seed`."""
    naps, longs, flaky = round(n * 0.10), round(n * 0.03), round(n * 0.02)
    jobs = ([Job("nap", "bench_nap", (NAP_S,))] * naps + [Job("long", "bench_nap", (LONG_S,))] * longs
            + [Job("flaky", "bench_flaky", (i,)) for i in range(flaky)]
            + [Job("quick", "bench_quick", (i, 1)) for i in range(n - naps - longs - flaky)])
    random.Random(seed).shuffle(jobs)
    return jobs


def sleep_time(jobs: Sequence[Job]) -> float:
    return sum(float(j.args[0]) for j in jobs if j.kind in ("nap", "long"))


def figures(jobs: Sequence[Job], t0: float, submitted: Sequence[float], finished: Sequence[float],
            slots: int, retry_waits: Sequence[float]) -> dict[str, float]:
    """Makespan and quick-task completion times from per-job submit and finish times (epoch seconds);
    `retry_waits`: for each flaky task, first failure to success (asked for: about 1 s)."""
    quick = [f - s for j, s, f in zip(jobs, submitted, finished, strict=True) if j.kind == "quick"]
    makespan = max(finished) - t0
    ideal = sleep_time(jobs) / slots
    fig = {"makespan_s": makespan, "ideal_s": ideal, "vs_ideal": makespan / ideal,
           "quick_p50_s": percentile(quick, 50), "quick_p99_s": percentile(quick, 99), "load": load()}
    if retry_waits:
        fig.update(retry_wait_p50_s=percentile(retry_waits, 50), retry_wait_max_s=max(retry_waits))
    return fig


def _failed_at(events: Sequence[tuple[float, str]]) -> float | None:
    """When the first attempt failed, from a YADTQ record's event list."""
    return next((ts for ts, text in events if text.startswith("retry")), None)


def yadtq_mixed(jobs: Sequence[Job], processes: int, concurrency: int) -> dict[str, float]:
    """One run on `processes` workers with YADTQ_CONCURRENCY=`concurrency`, private broker and Redis."""
    with private_services(partitions=PARTITIONS, concurrency=concurrency, retry_backoff=RETRY_DELAY_S) as s:
        procs = spawn_workers(s, processes, tasks=["bench.mixed_tasks"])
        try:
            with YADTQ(s) as q:
                serving = workers_serving(q, processes, "bench_quick", [0, 0], 2 * PARTITIONS)
                before = q.backend.counts()["success"]
                t0 = time.time()
                ids = q.submit_many([(j.task, list(j.args)) for j in jobs])

                def done() -> int:
                    c = q.backend.counts()
                    return int(c["success"] + c["failed"])
                wait_for_count(done, len(jobs) + before, f"mixed workload on {processes}x{concurrency}")
                recs = q.backend.get_many(ids)
                flaky_failed = [_failed_at(q.backend.events(r.task_id))
                                for j, r in zip(jobs, recs, strict=True) if j.kind == "flaky"]
        finally:
            stop(procs)
    failed = [r for r in recs if r.status != "success"]
    if failed:
        raise RuntimeError(f"{len(failed)} mixed tasks did not succeed, e.g. {failed[0].error}")
    flaky_done = [r.finished or 0.0 for j, r in zip(jobs, recs, strict=True) if j.kind == "flaky"]
    fig = figures(jobs, t0, [r.submitted or t0 for r in recs], [r.finished or 0.0 for r in recs],
                  processes * concurrency,
                  [done - fail for fail, done in zip(flaky_failed, flaky_done, strict=True) if fail is not None])
    fig["workers_serving"] = serving
    return fig


def celery_mixed(rig: Any, jobs: Sequence[Job], pool: str, concurrency: int) -> dict[str, float]:
    """One run on a Celery worker (`pool`, `concurrency`, prefetch 1, acks_late)."""
    from bench.celery_bench import done_at, wait_ready
    rig.start(pool, concurrency, 1)
    tasks = {name: getattr(rig.app, name) for name in ("bench_quick", "bench_nap", "bench_flaky")}
    t0 = time.time()
    sent = []
    for j in jobs:
        before = time.time()
        sent.append((tasks[j.task].apply_async(j.args), before))
    results = [r for r, _ in sent]
    wait_ready(results, 600)
    failed = [r for r in results if not r.successful()]
    if failed:
        raise RuntimeError(f"{len(failed)} mixed Celery tasks did not succeed")
    flaky = [r for j, r in zip(jobs, results, strict=True) if j.kind == "flaky"]
    failed_at = rig.app.app.backend.client.hmget(rig.app.FLAKY_FAILED_AT, [r.id for r in flaky])
    waits = [done_at(r) - float(at) for r, at in zip(flaky, failed_at, strict=True) if at is not None]
    return figures(jobs, t0, [t for _, t in sent], [done_at(r) for r in results], concurrency, waits)


# Setups per slot count: YADTQ processes x concurrency, and the Celery pool.
YADTQ_SETUPS: dict[int, list[tuple[int, int]]] = {2: [(2, 1), (1, 2)], 8: [(2, 4), (1, 8), (8, 1)]}
CELERY_POOL = {2: "prefork", 8: "threads"}


def run(n: int, slots_list: Sequence[int], yadtq: bool = True, celery: bool = True, rig: Any = None,
        setups: dict[int, list[tuple[int, int]]] | None = None,
        say: Any = print) -> dict[str, dict[str, dict[str, float]]]:
    """{"2 slots": {"YADTQ 2x1": figures, ..., "Celery prefork 2": figures}, ...}; one run of each.
    `setups` overrides YADTQ's processes x concurrency per slot count."""
    jobs = workload(n)
    out: dict[str, dict[str, dict[str, float]]] = {}
    own_rig = celery and rig is None
    if own_rig:
        from bench.celery_bench import CeleryRig
        rig = CeleryRig()
    try:
        for slots in slots_list:
            row = out.setdefault(f"{slots} slots", {})
            if yadtq:
                for p, c in (setups or YADTQ_SETUPS).get(slots, [(1, slots)]):
                    row[f"YADTQ {p}x{c}"] = fig = attempt(yadtq_mixed, jobs, p, c)
                    say(f"  mixed {slots} slots YADTQ {p}x{c}: " + describe(fig), flush=True)
            if celery:
                pool = CELERY_POOL.get(slots, "threads")
                row[f"Celery {pool} {slots}"] = fig = attempt(celery_mixed, rig, jobs, pool, slots)
                say(f"  mixed {slots} slots Celery {pool} {slots}: " + describe(fig), flush=True)
    finally:
        if own_rig:
            import gc
            gc.collect()  # Celery's result objects talk to Redis when collected: before it stops
            rig.close()
    return out


def describe(fig: dict[str, Any]) -> str:
    if "error" in fig:
        return f"ERROR {fig['error']}"
    retry = (f"retry wait p50 {fig['retry_wait_p50_s']:.1f} s max {fig['retry_wait_max_s']:.1f} s, "
             if "retry_wait_p50_s" in fig else "")
    return (f"makespan {fig['makespan_s']:.1f} s (ideal {fig['ideal_s']:.1f} s, {fig['vs_ideal']:.2f}x), "
            f"quick p50 {fig['quick_p50_s'] * 1000:.0f} ms p99 {fig['quick_p99_s'] * 1000:.0f} ms, {retry}"
            f"load {fig['load']:.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--slots", type=int, nargs="+", default=[2, 8])
    side = p.add_mutually_exclusive_group()
    side.add_argument("--yadtq-only", action="store_true")
    side.add_argument("--celery-only", action="store_true")
    args = p.parse_args(argv)
    run(args.tasks, args.slots, yadtq=not args.celery_only, celery=not args.yadtq_only)


if __name__ == "__main__":
    main()

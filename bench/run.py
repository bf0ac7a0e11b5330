"""`make bench`: every benchmark in one run, one table with figures, ratios and targets, JSON in bench/results/.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--runs N] [--broker NAME ...] [--no-celery] [--no-peers]
    .venv/bin/python bench/run.py --show bench/results/latest.json [--markdown]

Each benchmark starts its own private broker and Redis. YADTQ is measured on
each --broker (a column each); Celery runs in the same invocation, and so do
the peers Dramatiq and arq (with "scale": `add` end to end on 2 worker
processes, on a Redis with YADTQ's `appendfsync always` and on one without
persistence, YADTQ measured on both), so ratios are measured on the same
(shared, noisy) machine at the same time. Repeated
figures are medians of --runs runs with min and max; the mixed workload runs
once per setup (it is the long one). Every figure carries the 1-minute load
average seen when it was taken. Targets are printed as met or not, never
asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench import (  # noqa: F401 (kafka_bench registers "kafka")
    common,
    cpu_per_task,
    delayed,
    failover,
    kafka_bench,
    limits_bench,
    mixed,
    redis_cluster_bench,
    scale,
    scaling,
    scaling_rows,
    yadtq_bench,
)
from bench.common import attempt, repeat, save, summarize
from bench.table import errors, render

NAMES = ("mixed", "scale", "scaling", "latency", "transport", "failover", "memory", "limits", "delayed",
         "workflows", "dashboard", "wakeup", "start", "cpu", "cluster")


@dataclass(frozen=True)
class Sizes:
    mixed_tasks: int
    mixed_setups: dict[int, list[tuple[int, int]]]
    scale_tasks: int
    scale_workers: tuple[int, ...]
    celery_scale_tasks: int
    peer_tasks: int  # Dramatiq, arq polling every 0.05 s
    slow_peer_tasks: int  # arq at its default poll (0.5 s): about 200/s, Celery's size
    transport: int
    latency: int
    memory: int
    dashboard: tuple[int, ...]
    wakeup: int  # result() calls woken by an outcome, pushed and polled each
    delayed: int  # tasks due in the same second
    scaling: tuple[int, tuple[int, ...], tuple[int, ...]] = (3000, scaling.WORKERS, scaling.CONCURRENCY)
    cpu: int = 20_000  # `add` tasks whose CPU time (every process) is divided by their number
    # One Redis against a local 3-primary Redis Cluster (bench/redis_cluster_bench.py): `add` tasks end
    # to end, worker processes, rounds, store-only processes, seconds each store-only run lasts.
    cluster: tuple[int, int, int, int, float] = (3000, 2, 3, 4, 5.0)


FULL = Sizes(1000, mixed.YADTQ_SETUPS, 20_000, (1, 2, 4), 2_000, 20_000, 2_000, 20_000, 1000, 100_000,
             (100_000, 1_000_000), 200, 10_000)
QUICK = Sizes(100, {2: [(1, 2)]}, 1000, (1, 2), 300, 300, 300, 2000, 100, 5000, (2_000, 20_000), 30, 1000,
              (200, scaling.QUICK_WORKERS, scaling.QUICK_CONCURRENCY), 1000, (300, 2, 1, 2, 1.0))
PEER_WORKERS = 2  # the worker processes of the peers' comparison (YADTQ's "scale" row with 2 workers)
RATE = 100.0
LIMIT_RATE = 20.0  # the limits benchmark's rate limit, starts per second
LIMIT_UNLIMITED = {False: 3000, True: 1000}  # add tasks timed beside the saturated limit (full, --quick)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    runs = 1 if args.quick else args.runs
    if args.quick:  # shorter group joins on the embedded broker (bench/common.py)
        common.settings_overrides.update(session_timeout_ms=1500, heartbeat_interval_ms=500)
    took: dict[str, float] = {}
    out: dict[str, Any] = {"quick": args.quick, "runs": runs, "brokers": args.broker, "mixed_tasks": sizes.mixed_tasks,
                           "load_at_start": common.load(), "cpus": os.cpu_count(), "yadtq": {}, "celery": {},
                           "peers": {}, "section_s": took}
    only = set(args.only)
    peers = not args.no_peers and "scale" in only

    def timed(name: str, fn: Callable[..., Any], *fargs: Any, **kwargs: Any) -> Any:
        """`fn`'s result, or {"error": ...} when it failed (the other parts still run); its wall time
        goes to the results too (the whole run has a budget)."""
        t = time.time()
        result = attempt(fn, *fargs, **kwargs)
        took[name] = round(time.time() - t, 1)
        print(f"  [{name}: {took[name]:.0f} s, load {common.load():.1f}]", flush=True)
        return result

    t0 = time.time()
    for broker in args.broker:
        common.use_broker(broker)
        y: dict[str, Any] = out["yadtq"].setdefault(broker, {})
        print(f"YADTQ on the {broker} broker", flush=True)
        if "mixed" in only:
            y["mixed"] = timed(f"mixed {broker}", mixed.run, sizes.mixed_tasks, list(sizes.mixed_setups),
                               celery=False, setups=sizes.mixed_setups)
        if "scale" in only:
            y["scale"] = timed(f"scale {broker}", scale.yadtq_run, sizes.scale_tasks, sizes.scale_workers, runs)
        if "scaling" in only:
            y["scaling"] = timed(f"scaling {broker}", scaling.run, *sizes.scaling)
        if peers:  # the peers run on both Redis settings: YADTQ too, for ratios at equal settings
            y["scale_no_persistence"] = timed(f"scale {broker}, Redis without persistence", scale.yadtq_run,
                                              sizes.scale_tasks, (PEER_WORKERS,), runs, redis="no_persistence")
        if "latency" in only:
            y["latency"] = timed(f"latency {broker}", repeat, runs, yadtq_bench.latency, sizes.latency, RATE)
        if "transport" in only:
            y["transport"] = timed(f"transport {broker}", repeat, runs, yadtq_bench.transport, sizes.transport)
            y["transport_latency"] = timed(f"transport latency {broker}", repeat, runs,
                                           yadtq_bench.transport_latency, sizes.latency, RATE)
        if "failover" in only:
            y["failover"] = timed(f"failover {broker}", repeat, 1, failover.run)
        if "memory" in only:
            y["memory"] = timed(f"memory {broker}", repeat, 1, yadtq_bench.memory, sizes.memory)
        if "limits" in only:
            y["limits"] = timed(f"limits {broker}", limits_bench.run, args.limit_seconds or (10 if args.quick else 60),
                                LIMIT_RATE, LIMIT_UNLIMITED[args.quick])
        if "delayed" in only:
            y["delayed"] = timed(f"delayed {broker}", repeat, 1, delayed.lateness, sizes.delayed)
        if "start" in only:  # `yadtq run` (what `make run` execs) to the first `submit --wait` (bench/first_task.py)
            from bench import first_task
            y["start"] = timed(f"start {broker}", first_task.for_bench, broker, runs)
        if "cpu" in only:
            y["cpu"] = timed(f"cpu per task {broker}", cpu_per_task.run, sizes.cpu, PEER_WORKERS, runs)
        if "cluster" in only:
            y["cluster"] = timed(f"Redis Cluster {broker}", redis_cluster_bench.run, *sizes.cluster)
        if "workflows" in only:
            from bench import workflows_bench
            y["workflows"] = timed(f"workflows {broker}", repeat, 1, workflows_bench.run,
                                   *(workflows_bench.QUICK if args.quick else workflows_bench.FULL))
    common.use_broker(args.broker[0])
    if "dashboard" in only:  # Redis only: no broker dimension
        from bench import dashboard_refresh
        refresh = timed("dashboard", dashboard_refresh.main, sizes.dashboard)
        out["dashboard"] = refresh if "error" in refresh else {k: summarize([v]) for k, v in refresh.items()}
    if "wakeup" in only:  # Redis only: no broker dimension
        from bench import wakeup
        out["wakeup"] = timed("result() wake-up", wakeup.main, sizes.wakeup)
    if not args.no_celery and only & {"mixed", "scale", "latency"}:
        from bench import celery_bench
        print("Celery 5 (Redis broker and backend, acks_late)", flush=True)
        rig = celery_bench.CeleryRig()
        c: dict[str, Any] = out["celery"]
        try:
            if "mixed" in only:
                c["mixed"] = timed("mixed Celery", mixed.run, sizes.mixed_tasks, list(sizes.mixed_setups),
                                   yadtq=False, rig=rig)
            if "scale" in only:
                c["scale"] = timed("scale Celery", scale.celery_run, rig, sizes.celery_scale_tasks,
                                   sizes.scale_workers, runs)
            if "latency" in only:
                c["latency"] = timed("latency Celery", repeat, runs, celery_bench.latency, rig, sizes.latency, RATE)
            gc.collect()  # Celery's result objects talk to Redis when collected: before it stops
        finally:
            rig.close()
    if peers:
        from bench import arq_bench, dramatiq_bench
        from bench import peers as peer_bench
        print(f"Peers (Redis broker and results, {PEER_WORKERS} worker processes)", flush=True)
        arq_default, arq_fast = arq_bench.peers()
        out["peers"] = timed("peers", peer_bench.run, [(dramatiq_bench.peer(), sizes.peer_tasks),
                                                       (arq_default, sizes.slow_peer_tasks),
                                                       (arq_fast, sizes.peer_tasks)], runs)
    out["load_at_end"] = common.load()
    out["wall_s"] = round(time.time() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one run each (the smoke test)")
    p.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--broker", nargs="+", choices=list(common.BROKERS), default=["embedded"],
                   help="brokers YADTQ is measured on, a column each (default: embedded)")
    p.add_argument("--no-celery", action="store_true", help="no Celery")
    p.add_argument("--limit-seconds", type=float, metavar="S",
                   help="how long the limits benchmark keeps its rate-limited type saturated (default 60, quick 10)")
    p.add_argument("--no-peers", action="store_true", help="no Dramatiq and arq")
    p.add_argument("--show", type=Path, metavar="JSON", help="print the table of a saved result, run nothing")
    p.add_argument("--markdown", action="store_true", help="the table as Markdown (for the README)")
    p.add_argument("--out", type=Path, metavar="JSON",
                   help="where the results go (default bench/results/latest.json, or quick.json with --quick)")
    args = p.parse_args(argv)
    if args.show:
        out: dict[str, Any] = json.loads(args.show.read_text())
    else:
        out = measure(args)
        path = save("quick" if args.quick else "latest", out, args.out)
        print(f"wrote {path}")
    print(render(out, args.markdown))
    if scaling_rows.detail(out):
        print("\n" + scaling_rows.detail(out, args.markdown))
    if errors(out):
        sys.exit(1)
    return out


if __name__ == "__main__":
    main()

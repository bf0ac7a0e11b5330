"""Scaling: `add` end to end over worker processes x concurrency, the CPU each process type spends per
task, and what bounds each cell.

    .venv/bin/python bench/scaling.py [--tasks 3000] [--workers 1 2 4 8] [--concurrency 1 4 16 64] [--broker kafka]
    .venv/bin/python bench/run.py --only scaling [--quick] [--broker embedded kafka]   # in the bench table

One broker and Redis (YADTQ's own, `appendfsync always`) serve the whole grid; each cell gets a
fresh topic of PARTITIONS partitions (so that 8 worker processes all hold one), group and key prefix,
starts its workers at the cell's concurrency, runs a warm-up task on each, then times `tasks` `add`
submitted in batches, first submit to last success stored. Over that window bench/proc_cpu.py reads
the CPU time of the workers, the broker, Redis and this process (the client: submits and polls the
success count), and how busy the machine was. One run per cell: the grid is large; the load average
is recorded with each cell.

What bounds a cell is computed from its figures by `bound_by`, in this order:

1. "cores": the machine's CPUs were at least CORES_BUSY busy over the window, and the benchmark's
   own processes used most of that (at least OURS of all cores): more processes or
   concurrency cannot go faster on this machine. "cores, shared" when the machine was that busy
   but mostly with other load (the machine is shared): the figures of that cell are starved.
2. "<role> CPU": the busiest single process (a worker, the broker, Redis, the client) spent at least
   ONE_CORE of one core: that process is the bottleneck (Python processes and Redis run on one core).
3. "Redis fsync": Redis was seen waiting on its disk (state D) at least FSYNC_WAIT of the time.
4. "round trips": none of the above; too few tasks in flight (processes x concurrency) to keep any
   process busy, so each task's round trips set the pace.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench import proc_cpu
from bench.common import attempt, load, private_services_and_pids, spawn_workers, stop, wait_for_count, workers_serving
from yadtq.client.client import YADTQ
from yadtq.config import Settings

WORKERS = (1, 2, 4, 8)
CONCURRENCY = (1, 4, 16, 64)
QUICK_WORKERS = (2,)  # one cell: the smoke test runs it
QUICK_CONCURRENCY = (4,)
PARTITIONS = 8  # one per worker process at the most, so every process of the largest setup serves
BATCH = 1000
ROLES = ("workers", "broker", "redis", "client")
NAMES = {"workers": "worker", "broker": "broker", "redis": "Redis", "client": "client"}  # in "bound by"
# The thresholds of the rule in the module's docstring.
CORES_BUSY = 0.9
OURS = 0.75  # the rest of a busy machine is the kernel's and the shared machine's other load
ONE_CORE = 0.85
FSYNC_WAIT = 0.5

# Every answer `bound_by` can give.
BOUNDS = ("cores", "cores, shared", *(f"{name} CPU" for name in NAMES.values()), "Redis fsync", "round trips")

Grid = dict[str, dict[str, dict[str, Any]]]  # worker processes -> concurrency -> figures


def bound_by(fig: dict[str, Any]) -> str:
    """What bounds a cell, from its figures (the rule in the module's docstring)."""
    if fig["machine_busy"] >= CORES_BUSY:
        return "cores" if ours(fig) >= OURS else "cores, shared"
    role, share = max(fig["busiest"].items(), key=lambda kv: (kv[1], kv[0]))
    if share >= ONE_CORE:
        return f"{NAMES.get(role, role)} CPU"
    if (fig.get("redis_disk_wait") or 0.0) >= FSYNC_WAIT:
        return "Redis fsync"
    return "round trips"


def cell(base: Settings, service_pids: dict[str, list[int]], n: int, workers: int, concurrency: int) -> dict[str, Any]:
    """`n` add end to end on `workers` processes at `concurrency`, with CPU per task by process type."""
    u = uuid.uuid4().hex[:8]
    s = base.replace(topic=f"scaling-{u}", heartbeat_topic=f"hb-{u}", group=f"g-{u}", prefix=f"s{u}:",
                     concurrency=concurrency)
    procs = spawn_workers(s, workers)
    try:
        with YADTQ(s) as q:
            serving = workers_serving(q, workers)
            before = q.backend.counts()["success"]
            meter = proc_cpu.Meter({"workers": [p.pid for p in procs], "client": [os.getpid()], **service_pids},
                                   disk_wait_pid=service_pids["redis"][0])
            t0 = time.perf_counter()
            for i in range(0, n, BATCH):
                q.submit_many([("add", [j, 1]) for j in range(i, min(n, i + BATCH))])
            wait_for_count(lambda: q.backend.counts()["success"], n + before,
                           f"{n:,} add on {workers} x {concurrency}")
            total = time.perf_counter() - t0
            reading = meter.stop()
    finally:
        stop(procs)
    return figures(n, total, reading, serving)


def figures(n: int, total_s: float, r: proc_cpu.Reading, serving: int) -> dict[str, Any]:
    """A cell's JSON figures: throughput, CPU µs per task and busiest-process share by role, the machine."""
    fig: dict[str, Any] = {
        "tasks": n, "end_to_end_per_s": n / total_s, "workers_serving": serving, "wall_s": r.wall_s,
        "cpu_us_per_task": {role: r.roles[role].cpu_s / n * 1e6 for role in ROLES if role in r.roles},
        "cores_used": {role: r.roles[role].cpu_s / r.wall_s for role in ROLES if role in r.roles},
        "busiest": {role: r.roles[role].busiest for role in ROLES if role in r.roles},
        "machine_busy": r.machine_busy, "redis_disk_wait": r.disk_wait, "cpus": r.cpus, "load": load()}
    fig["cpu_us_per_task"]["all"] = sum(fig["cpu_us_per_task"].values())
    fig["bound_by"] = bound_by(fig)
    return fig


def run(n: int, workers: Sequence[int] = WORKERS, concurrency: Sequence[int] = CONCURRENCY,
        say: Any = print) -> Grid | dict[str, str]:
    """The grid on one broker and Redis (`bench.common.current_broker`); a failed cell holds {"error": ...}."""
    out: Grid = {}
    with private_services_and_pids(partitions=PARTITIONS) as (base, pids):
        for w in workers:
            for c in concurrency:
                out.setdefault(str(w), {})[str(c)] = fig = attempt(cell, base, pids, n, w, c)
                say(f"  scaling {w} x {c}: {describe(fig)}", flush=True)
    return out


def ours(fig: dict[str, Any]) -> float:
    """The share of the machine's cores the benchmark's own processes used."""
    return float(sum(fig["cores_used"].values()) / fig["cpus"])


def describe(fig: dict[str, Any]) -> str:
    if "error" in fig:
        return f"ERROR {fig['error']}"
    cpu = fig["cpu_us_per_task"]
    return (f"{fig['end_to_end_per_s']:,.0f} tasks/s, CPU µs/task " +
            " ".join(f"{k} {v:,.0f}" for k, v in cpu.items()) +
            f", machine {fig['machine_busy']:.0%} busy (ours {ours(fig):.0%}), bound by {fig['bound_by']}"
            f" (load {fig['load']:.1f})")


def main(argv: list[str] | None = None) -> None:
    from bench import common, kafka_bench  # noqa: F401 (kafka_bench registers "kafka")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=3000)
    p.add_argument("--workers", type=int, nargs="+", default=list(WORKERS))
    p.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    p.add_argument("--broker", choices=list(common.BROKERS), default="embedded")
    p.add_argument("--out", type=Path, metavar="JSON",
                   help="also write the grid as a bench/run.py result (`run.py --show JSON` prints it)")
    args = p.parse_args(argv)
    common.use_broker(args.broker)
    out = {"quick": False, "runs": 1, "brokers": [args.broker], "cpus": os.cpu_count(), "load_at_start": load()}
    out["yadtq"] = {args.broker: {"scaling": run(args.tasks, args.workers, args.concurrency)}}
    if args.out:
        print(f"wrote {common.save('scaling', {**out, 'load_at_end': load()}, args.out)}")


if __name__ == "__main__":
    main()


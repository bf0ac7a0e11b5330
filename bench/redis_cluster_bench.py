"""Throughput on one Redis and on a local 3-primary Redis Cluster (docs/redis-cluster.md).

    python -m bench.redis_cluster_bench [--tasks 3000] [--workers 2] [--rounds 3] [--clients 4] [--seconds 5]

`make bench` runs it as the part `cluster` (bench/run.py --only cluster), on each --broker.

Two figures per Redis, interleaved round by round so a load change on the machine hits both:

- end to end: `--tasks` add tasks submitted at once and run by `--workers` worker processes
  (embedded broker), first submit to last success stored;
- the store alone: `--clients` processes each looping over what the Redis side of a task costs
  (the submit script, then the worker's step claiming 100 tasks, then its step storing their
  outcomes) for `--seconds`, no broker and no task code: the ceiling Redis sets.

Both Redis setups run on this machine, so the cluster's three primaries share its cores with
everything else: the figures say what the sharded paths cost here, not what three hosts give.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common
from bench.common import load, spawn_workers, stop, summarize, wait_for_count, workers_serving
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import free_cluster_port, free_port
from yadtq.ops.redis_cluster import RedisCluster
from yadtq.ops.services import start_redis
from yadtq.store.backend import Backend
from yadtq.store.claims import Claim, ClaimPipeline, Outcome
from yadtq.store.connection import connect_redis
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status
from yadtq.worker.records import TaskWork

BATCH = 100


def _end_to_end(base: Settings, url: str, tasks: int, workers: int) -> float:
    u = uuid.uuid4().hex[:8]
    s = base.replace(redis_url=url, topic=f"bench-{u}", heartbeat_topic=f"hb-{u}", group=f"g-{u}", prefix=f"b{u}:")
    procs = spawn_workers(s, workers)
    try:
        with YADTQ(s) as q:
            workers_serving(q, workers)
            before = q.backend.counts().get(Status.SUCCESS, 0)
            start = time.monotonic()
            q.submit_many([("add", [i, 1]) for i in range(tasks)])
            wait_for_count(lambda: q.backend.counts().get(Status.SUCCESS, 0) - before, tasks, "tasks")
            return tasks / (time.monotonic() - start)
    finally:
        stop(procs)


def _store_loop(url: str, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    s = Settings(redis_url=url, prefix=f"s{uuid.uuid4().hex[:8]}:")
    r = connect_redis(s)
    backend, claims = Backend(r, s), ClaimPipeline(r, s, "bench", uuid.uuid4().hex)
    done = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        msgs = [TaskMessage(uuid.uuid4().hex, "add", (i, 1), {}, 3, time.time()) for i in range(BATCH)]
        backend.record_queued(msgs, 3)
        _, verdicts = claims.step([], [Claim(TaskWork(m, ""), 0, i) for i, m in enumerate(msgs)])
        fences = [str(getattr(v, "fence", "")) for v in verdicts]
        stored, _ = claims.step([Outcome(m.task_id, f, Status.SUCCESS, "2") for m, f in zip(msgs, fences, strict=True)], [])
        done += sum(stored)
    out.put(done / seconds)


def _store_rate(url: str, clients: int, seconds: float) -> float:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_store_loop, args=(url, seconds, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


# Figure keys: (Redis setup, what): "one" or "cluster", then "end_to_end" or "store".
SETUPS = ("one", "cluster")


def run(tasks: int = 3000, workers: int = 2, rounds: int = 3, clients: int = 4, seconds: float = 5.0,
        broker: str | None = None) -> dict[str, Any]:
    """`rounds` rounds, each measuring one Redis then the cluster: the figures of each (median, min, max over
    the rounds), in tasks/s, `<setup>_end_to_end_per_s` and `<setup>_store_per_s`, with the load average
    after each round and the sizes. The broker is `broker` (default: bench.common's current one)."""
    tmp = Path(tempfile.mkdtemp(prefix="yadtq-cluster-bench-"))
    bootstrap, broker_procs = common.BROKERS[broker or common.current_broker](tmp)
    port = free_port()
    single = start_redis("127.0.0.1", port, tmp / "one" / "data", tmp / "one" / "logs")
    cluster = RedisCluster("127.0.0.1", (free_cluster_port(), free_cluster_port(), free_cluster_port()),
                           tmp / "cluster" / "data", tmp / "cluster" / "logs")
    try:
        cluster.start()
        base = Settings(kafka_bootstrap=bootstrap, log_dir=str(tmp / "logs"), data_dir=str(tmp / "data")
                        ).replace(**common.settings_overrides)
        urls = {"one": f"redis://127.0.0.1:{port}/0", "cluster": cluster.url}
        figures: dict[str, list[float]] = {f"{n}_{what}_per_s": [] for n in SETUPS for what in ("end_to_end", "store")}
        loads: list[float] = []
        for _ in range(rounds):
            for name, url in urls.items():
                figures[f"{name}_end_to_end_per_s"].append(_end_to_end(base, url, tasks, workers))
                figures[f"{name}_store_per_s"].append(_store_rate(url, clients, seconds))
            loads.append(load())
        out: dict[str, Any] = {k: summarize(v) for k, v in figures.items()}
        out["load"] = summarize(loads)
        out.update(tasks=tasks, workers=workers, clients=clients, seconds=seconds, primaries=len(cluster.ports))
        return out
    finally:
        cluster.stop()
        stop([single, *broker_procs])
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    out = run(args.tasks, args.workers, args.rounds, args.clients, args.seconds)
    for name, label in (("one", "one Redis"), ("cluster", "Redis Cluster, 3 primaries")):
        for what, how in (("end_to_end", f"{args.tasks} add tasks, {args.workers} workers"),
                          ("store", f"{args.clients} processes, submit + claim + outcome in batches of {BATCH}")):
            fig = out[f"{name}_{what}_per_s"]
            print(f"{label:28} {what.replace('_', ' '):10} median {fig['median']:7.0f} tasks/s "
                  f"({fig['min']:.0f}..{fig['max']:.0f}; {how})")
    print(f"load average after each round: median {out['load']['median']:.1f}, max {out['load']['max']:.1f}")


if __name__ == "__main__":
    main()

"""What waiting for a replica costs: tasks/s behind Sentinel with and without `WAIT 1` after each step.

    python -m bench.redis_ha_bench [--tasks 3000] [--workers 2]

One embedded broker and one local Redis HA set (primary, replica, three
Sentinels, yadtq.ops.redis_ha); the same run with `replicas_ack=1` (the
default of a redis+sentinel:// URL) and `replicas_ack=0`, and on the primary
directly (a plain redis:// URL), a fresh topic each.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import _embedded, spawn_workers, stop, wait_for_count, workers_serving
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import free_port
from yadtq.ops.redis_ha import RedisHA
from yadtq.store.connection import connect_redis
from yadtq.store.replication import ReplicaAck
from yadtq.task.status import Status


def _run(base: Settings, url: str, tasks: int, workers: int) -> float:
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


def _step_latency(url: str, calls: int) -> tuple[float, float]:
    """p50 and p99 (ms) of a small write script called `calls` times as a worker's step is."""
    s = Settings(redis_url=url)
    r = connect_redis(s)
    script = r.register_script("redis.call('HSET', KEYS[1], 'status', ARGV[1], 'result', ARGV[2]) return 1")
    ack = ReplicaAck.for_settings(s)
    took = []
    for i in range(calls):
        start = time.perf_counter()
        if ack is None:
            script(keys=[f"bench:{i}"], args=["success", "42"])
        else:
            ack.call(r, script, [f"bench:{i}"], ["success", "42"])
        took.append((time.perf_counter() - start) * 1000)
    r.close()
    took.sort()
    return took[len(took) // 2], took[int(len(took) * 0.99)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calls", type=int, default=5000, help="step-sized writes timed one by one")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="yadtq-ha-bench-"))
    bootstrap, broker = _embedded(tmp)
    ha = RedisHA("127.0.0.1", free_port(), free_port(), (free_port(), free_port(), free_port()),
                 tmp / "data", tmp / "logs")
    ha.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        ha.start()
        base = Settings(kafka_bootstrap=bootstrap, log_dir=str(tmp / "logs"), data_dir=str(tmp / "data"))
        urls = {"sentinel, WAIT 1 per step": ha.url,
                "sentinel, no WAIT": ha.url + "?replicas_ack=0",
                "primary directly": f"redis://127.0.0.1:{ha.primary_port}/0"}
        figures: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(args.rounds):  # interleaved, so a load change on the machine hits every variant
            for name, url in urls.items():
                figures[name].append(_run(base, url, args.tasks, args.workers))
        for name, rates in figures.items():
            print(f"{name:28} {' '.join(f'{r:7.0f}' for r in rates)} tasks/s "
                  f"({args.tasks} add tasks, {args.workers} workers)")
        for name, url in urls.items():
            p50, p99 = _step_latency(url, args.calls)
            print(f"{name:28} one step: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({args.calls} calls)")
    finally:
        ha.stop()
        stop(broker)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

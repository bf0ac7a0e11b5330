"""Delayed tasks: lateness of `n` tasks all due in the same second, and Redis memory per waiting task.

`n` `add` tasks are submitted with one `eta` (a few seconds ahead, so submitting them all
ends first); 2 worker processes publish them when due (each takes due tasks atomically,
in bounded batches) and run them. Per task, from its record (Redis time throughout):

* lateness (the target): when it could first be claimed, minus its eta: the later of its
  eta and when a scheduler took it to publish (they publish `YADTQ_SCHEDULE_LEAD`
  seconds ahead; a worker holds a task that comes early until its eta);
* start lateness: when a worker started it, minus its eta (this includes working through
  the burst: `n` tasks cannot all start in the same second on 2 processes).

Memory: Redis used_memory after recording the `n` waiting tasks, minus before, per task.
"""

from __future__ import annotations

from typing import Any

import redis

from bench.common import percentile, private_services, spawn_workers, stop, wait_for_count, workers_serving
from yadtq.client.client import YADTQ
from yadtq.task.status import Status

WORKERS = 2
CHUNK = 2000


def lateness(n: int, workers: int = WORKERS) -> dict[str, float]:
    with private_services(partitions=4) as s:
        r = redis.Redis.from_url(s.redis_url, decode_responses=True)
        procs = spawn_workers(s, workers)
        try:
            with YADTQ(s) as q:
                workers_serving(q, workers)
                sec, usec = r.time()
                eta = sec + usec / 1e6 + 5.0 + s.schedule_lead + n / 500  # submitting ends before it is due
                before = int(r.info("memory")["used_memory"])
                ids: list[str] = []
                for i in range(0, n, CHUNK):
                    ids += q.submit_many([("add", [j, 1], {}, {"eta": eta}) for j in range(i, min(n, i + CHUNK))])
                waiting_bytes = (int(r.info("memory")["used_memory"]) - before) / n
                scheduled = q.backend.counts()[Status.SCHEDULED]
                sec, usec = r.time()
                if sec + usec / 1e6 >= eta:
                    raise RuntimeError("submitting took past the eta: the figure would not mean anything")
                done_before = q.backend.counts()[Status.SUCCESS]
                wait_for_count(lambda: q.backend.counts()[Status.SUCCESS], done_before + n,
                               f"delayed, {n:,} add due at once", interval=0.2)
                released, started = _lateness(r, q, ids, eta)
        finally:
            stop(procs)
    return {"tasks": n, "scheduled_seen": scheduled, "bytes_per_waiting_task": waiting_bytes,
            "released_p50_ms": percentile(released, 50) * 1000, "released_p99_ms": percentile(released, 99) * 1000,
            "released_max_ms": max(released) * 1000,
            "start_p50_ms": percentile(started, 50) * 1000, "start_p99_ms": percentile(started, 99) * 1000,
            "started_early": sum(1 for x in started if x < 0)}


def _lateness(r: Any, q: YADTQ, ids: list[str], eta: float) -> tuple[list[float], list[float]]:
    pipe = r.pipeline(transaction=False)
    for tid in ids:
        pipe.hmget(q.backend.keys.task(tid), "released", "started")
    rows = pipe.execute()
    released = [max(0.0, float(a) - eta) for a, _ in rows if a]
    started = [float(b) - eta for _, b in rows if b]
    return released, started


if __name__ == "__main__":  # a quick look: python bench/delayed.py [N]
    import sys
    print(lateness(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))

"""A search and one refresh of each dashboard page, with 100,000 and 1,000,000 task records.

Times what each page reads (`dashboard/data.py`), not Streamlit's rendering.
Records are written straight into a private Redis in the shape the worker
stores them (a hash per task, the status indexes), so filling a million
takes seconds, not hours of real tasks. Prints the medians; asserts nothing.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import private_services
from dashboard import data
from dashboard.redis_source import RedisSource
from yadtq.client.client import YADTQ
from yadtq.store import search
from yadtq.store.keys import Keys

TYPES = ("add", "multiply", "resize", "send_mail")


def fill(q: YADTQ, n: int, start_at: int = 0, batch: int = 5000) -> None:
    """`n` finished tasks over the last hour (every 50th failed, with an error), four types, four workers."""
    keys = Keys(q.settings.prefix)
    now = time.time()
    for start in range(start_at, start_at + n, batch):
        pipe = q.redis.pipeline(transaction=False)
        scores: dict[str, dict[str, float]] = {}
        for i in range(start, min(start_at + n, start + batch)):
            tid = str(uuid.uuid4())
            status = "failed" if i % 50 == 0 else "success"
            finished = now - 3600 * (1 - i / 1_000_000)
            pipe.hset(keys.task(tid), mapping={
                "task": TYPES[i % 4], "args": json.dumps([i, 1]), "kwargs": "{}", "tries": 3, "time_limit": "",
                "submitted": finished - 0.7, "status": status, "attempts": 1, "failures": int(status == "failed"),
                "fence": 1, "worker": f"W{i % 4}", "owner": "x", "started": finished - 0.05 * (1 + i % 7),
                "partition": i % 4, "offset": i, "finished": finished,
                "result": str(i + 1) if status == "success" else "null",
                "error": "" if status == "success" else f"OSError: disk full on /var ({i})"})
            scores.setdefault(status, {})[tid] = finished
        for status, members in scores.items():
            pipe.zadd(keys.status(status), members)
        pipe.execute()


def fill_live(q: YADTQ, workers: int = 8) -> None:
    """What a busy farm's monitor keeps: a full hour of samples, the heartbeat log, the registry."""
    now = time.time()
    for start in range(0, 3600, 500):
        for t in range(start, start + 500):
            ts = now - 3600 + t
            q.live.add_sample({"ts": ts, "queued": 100, "processing": 8, "success": 1000 * t, "failed": 20 * t,
                               "cancelled": 0, "done_by": {f"W{w}": 125 * t for w in range(workers)},
                               "failed_by": {f"W{w}": 2 * t for w in range(workers)}})
    pipe = q.redis.pipeline(transaction=False)
    for i in range(2000):
        w = i % workers
        beat = {"worker": f"W{w}", "host": "bench", "pid": 1000 + w, "incarnation": "x", "state": "busy",
                "current_task": None, "done": 0, "failed": 0, "partitions": [w], "ts": now - (2000 - i) * 0.5,
                "concurrency": 8, "running": [str(uuid.uuid4()) for _ in range(8)],
                "partition_state": [{"partition": w, "committed": 1000 * i, "buffered": 40, "running": 8,
                                     "paused": False, "waiting": {"no_slot": 32}}]}
        pipe.lpush(q.live.keys.heartbeats, json.dumps(beat))
    pipe.execute()
    for w in range(workers):
        q.live.put_worker(f"W{w}", {"name": f"W{w}", "status": "ALIVE", "host": "bench", "pid": 1000 + w,
                                    "state": "busy", "last_heartbeat": now, "partitions": [w], "since": now - 3600})


def median_ms(call: Callable[[], Any], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(q: YADTQ) -> dict[str, float]:
    prune = q.settings.dashboard_prune_after
    src = RedisSource(q)
    return {
        "overview (1 hour window)": median_ms(lambda: data.load_overview(src, 3600, prune)),
        "tasks page (newest 50)": median_ms(lambda: data.find_tasks(src, search.TaskQuery())),
        "search: failed with 'disk full'": median_ms(lambda: data.find_tasks(
            src, search.TaskQuery(statuses=("failed",), error="disk full"))),
        "search: type send_mail on W3, any status": median_ms(lambda: data.find_tasks(
            src, search.TaskQuery(task="send_mail", worker="W3"))),
        "search: a name that matches nothing (full budget)": median_ms(lambda: data.find_tasks(
            src, search.TaskQuery(task="nope"))),
        "task page": median_ms(lambda: data.load_task(src, q.backend.list_ids("failed", 1)[0])),
        "workers and partitions": median_ms(lambda: data.load_farm(src, prune)),
        "failures": median_ms(lambda: data.load_failures(src)),
    }


def main(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict[str, float]:
    """Prints every figure; returns `refresh_ms_<n>` (the Overview, the heaviest page) for bench/run.py."""
    out: dict[str, float] = {}
    with private_services() as s, YADTQ(s) as q:
        fill_live(q)
        have = 0
        for n in sizes:
            fill(q, n - have, have)
            have = n
            print(f"\n{n:,} task records (median of 7, ms):", flush=True)
            figures = measure(q)
            for name, ms in figures.items():
                print(f"  {name:50} {ms:8.1f}", flush=True)
            out[f"refresh_ms_{n}"] = figures["overview (1 hour window)"]
    return out


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or (100_000, 1_000_000))

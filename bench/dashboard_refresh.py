"""One dashboard refresh (`dashboard.data.load_snapshot`) with 100,000 and 1,000,000 task records.

Records are written straight into a private Redis in the shape the worker
stores them (a hash per task, the status indexes), so filling a million
takes seconds, not hours of real tasks.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid

from bench.common import private_services
from dashboard.data import load_snapshot
from yadtq.client import YADTQ
from yadtq.keys import Keys


def fill(q: YADTQ, n: int, batch: int = 5000) -> None:
    keys = Keys(q.settings.prefix)
    now = time.time()
    for start in range(0, n, batch):
        pipe = q.redis.pipeline(transaction=False)
        scores = {}
        for i in range(start, min(n, start + batch)):
            tid = str(uuid.uuid4())
            status = "failed" if i % 50 == 0 else "success"
            pipe.hset(keys.task(tid), mapping={
                "task": "add", "args": json.dumps([i, 1]), "kwargs": "{}", "tries": 3, "time_limit": "",
                "submitted": now - 1, "status": status, "attempts": 1, "failures": 0, "fence": 1,
                "worker": f"W{i % 4}", "owner": "x", "started": now - 0.5, "partition": i % 4, "offset": i,
                "result": str(i + 1) if status == "success" else "null", "finished": now})
            scores.setdefault(status, {})[tid] = now - (n - i) / 1000
        for status, members in scores.items():
            pipe.zadd(keys.status(status), members)
        pipe.execute()


def refresh_ms(q: YADTQ, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        load_snapshot(q, prune_after=300)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict[str, float]:
    out: dict[str, float] = {}
    with private_services() as s, YADTQ(s) as q:
        have = 0
        for n in sizes:
            fill(q, n - have)
            have = n
            out[f"refresh_ms_{n}"] = refresh_ms(q)
            print(f"dashboard refresh with {n:,} records: {out[f'refresh_ms_{n}']:.1f} ms (median of 7)", flush=True)
    return out


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or (100_000, 1_000_000))

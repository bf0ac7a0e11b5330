"""The arq side of the comparison (issue 22): `add` as an arq job, arq's Redis settings from the environment.

Workers: `arq bench.arq_app.WorkerSettings`, one per process (bench/arq_bench.py), polling every
BENCH_ARQ_POLL_DELAY seconds (arq's default 0.5), max_jobs at arq's default (10).
Client: `python bench/arq_app.py N` enqueues N `add` jobs one `enqueue_job` at a time and prints
{"tasks", "submit_per_s", "end_to_end_per_s"} as JSON. Both read BENCH_REDIS_URL.

Imports only arq and the standard library: it runs in arq's own venv (arq pins redis-py < 6).
"""

import asyncio
import json
import os
import sys
import time

from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name

REDIS = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
STALL_S = 60.0


async def add(ctx, a, b):
    return a + b


class WorkerSettings:
    functions = (add,)
    redis_settings = REDIS
    poll_delay = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.5"))


async def measure(n):
    """First enqueue to the n-th job finished. A job leaves arq's queue (a sorted set) in the same
    transaction that stores its result, so the queue's size counts the outcomes not yet stored."""
    pool = await create_pool(REDIS)
    try:
        for _ in range(16):  # warm-up
            await pool.enqueue_job("add", 0, 0)
        await wait_until_empty(pool)
        t0 = time.perf_counter()
        for i in range(n):
            await pool.enqueue_job("add", i, 1)
        submitted = time.perf_counter() - t0
        await wait_until_empty(pool)
        total = time.perf_counter() - t0
    finally:
        await pool.aclose()
    return {"tasks": n, "submit_per_s": n / submitted, "end_to_end_per_s": n / total}


async def wait_until_empty(pool, interval=0.05):
    """Until the queue is empty; exits non-zero when its size stops moving for STALL_S."""
    last, last_move = await pool.zcard(default_queue_name), time.monotonic()
    while last > 0:
        await asyncio.sleep(interval)
        value = await pool.zcard(default_queue_name)
        if value != last:
            last, last_move = value, time.monotonic()
        elif time.monotonic() - last_move > STALL_S:
            sys.exit(f"arq stalled with {last:,} jobs queued")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(int(sys.argv[1])))))

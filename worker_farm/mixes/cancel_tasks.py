"""The cancels mix's task: runs a few seconds in short slices, noting each run's start."""

from __future__ import annotations

import os
import time

import redis

from worker_farm.mixes.task_redis import ledger as _ledger
from yadtq import current_task, task


@task
def mix_long(seconds: float) -> float:
    """Notes `<task id> <attempt>` as it starts (trying for a while through a Redis restart: a run
    that went unnoted could hide a broken promise), then sleeps in slices a cancel can interrupt."""
    ctx = current_task()
    assert ctx is not None
    for _ in range(50):
        try:
            _ledger().rpush(os.environ["YADTQ_PREFIX"] + "mix:cancels", f"{ctx.task_id} {ctx.attempt}")
            break
        except redis.RedisError:
            time.sleep(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    return seconds

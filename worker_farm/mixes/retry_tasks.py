"""The retries mix's task: asks for one parked retry, then succeeds."""

from __future__ import annotations

import os

import redis

from yadtq import Retry, current_task, task

_client: redis.Redis | None = None


def _ledger() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["YADTQ_REDIS_URL"], decode_responses=True)
    return _client


@task
def mix_retry_once(n: int) -> int:
    """Notes `<task id> <attempt>`, asks for a retry in 0.5 s on its first attempt, returns `n` after."""
    ctx = current_task()
    assert ctx is not None
    _ledger().rpush(os.environ["YADTQ_PREFIX"] + "mix:retries", f"{ctx.task_id} {ctx.attempt}")
    if ctx.attempt == 1:
        raise Retry("once more", delay=0.5)
    return n

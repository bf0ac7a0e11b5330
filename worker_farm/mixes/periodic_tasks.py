"""The periodic mix's task: notes each run (`<task id> <attempt>`) in a Redis list."""

from __future__ import annotations

import os

import redis

from yadtq import current_task, task

_client: redis.Redis | None = None


def _ledger() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["YADTQ_REDIS_URL"], decode_responses=True)
    return _client


@task
def mix_periodic_tick() -> str:
    ctx = current_task()
    assert ctx is not None
    _ledger().rpush(os.environ["YADTQ_PREFIX"] + "mix:periodic", f"{ctx.task_id} {ctx.attempt}")
    return ctx.task_id

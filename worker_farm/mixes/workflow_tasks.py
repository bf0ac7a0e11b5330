"""The workflows mix's tasks: a step that adds one, and a chord callback that sums; both note each run."""

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


def _note() -> None:
    ctx = current_task()
    assert ctx is not None
    _ledger().rpush(os.environ["YADTQ_PREFIX"] + "mix:workflows", ctx.task_id)


@task
def mix_wf_step(x: int) -> int:
    _note()
    return x + 1


@task
def mix_wf_sum(values: list[int]) -> int:
    _note()
    return sum(values)

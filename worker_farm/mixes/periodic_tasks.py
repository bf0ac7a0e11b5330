"""The periodic mix's task: notes each run (`<task id> <attempt>`) in a Redis list."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import ledger as _ledger
from yadtq import current_task, task


@task
def mix_periodic_tick() -> str:
    ctx = current_task()
    assert ctx is not None
    _ledger().rpush(os.environ["YADTQ_PREFIX"] + "mix:periodic", f"{ctx.task_id} {ctx.attempt}")
    return ctx.task_id

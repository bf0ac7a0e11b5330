"""The delayed mix's task: notes when it started (Redis time) and which attempt it is."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import ledger as _ledger
from yadtq import current_task, task


@task
def mix_delayed(n: int) -> int:
    """Notes `<task id> <attempt> <Redis time>` and returns `n`."""
    ctx = current_task()
    assert ctx is not None
    r = _ledger()
    sec, usec = r.time()
    r.rpush(os.environ["YADTQ_PREFIX"] + "mix:delayed", f"{ctx.task_id} {ctx.attempt} {sec + usec / 1e6}")
    return n

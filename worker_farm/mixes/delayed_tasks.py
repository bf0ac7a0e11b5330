"""The delayed mix's task: notes when it started (Redis time) and which attempt it is, once per run
even when Redis is killed under the note (`task_redis.note`)."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import ledger as _ledger
from worker_farm.mixes.task_redis import note
from yadtq import current_task, task


@task
def mix_delayed(n: int) -> int:
    """Notes `<task id> <attempt> <Redis time> <worker> <pid>` and returns `n`."""
    ctx = current_task()
    assert ctx is not None
    sec, usec = _ledger().time()
    note(os.environ["YADTQ_PREFIX"] + "mix:delayed",
         f"{ctx.task_id} {ctx.attempt} {sec + usec / 1e6:.6f} {ctx.worker} {os.getpid()}")
    return n

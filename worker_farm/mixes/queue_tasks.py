"""The queues mix's task: declared for a named queue; notes each run."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import ledger as _ledger
from yadtq import current_task
from yadtq.task.registry import registry

QUEUE = "mixq"
def mix_queued(n: int) -> int:
    """Notes `<task id> <attempt>`, returns `n`."""
    ctx = current_task()
    assert ctx is not None
    _ledger().rpush(os.environ["YADTQ_PREFIX"] + "mix:queues", f"{ctx.task_id} {ctx.attempt}")
    return n


registry.register(mix_queued, queue=QUEUE)  # as @task(queue=QUEUE) would

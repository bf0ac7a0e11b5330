"""The queues mix's task: declared for a named queue; notes each run, once even when
Redis is killed under the note (`task_redis.note`)."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import note, this_run
from yadtq import current_task
from yadtq.task.registry import registry

QUEUE = "mixq"
def mix_queued(n: int) -> int:
    """Notes `<task id> <attempt> <worker> <pid> <time>` (once per run), returns `n`."""
    ctx = current_task()
    assert ctx is not None
    note(os.environ["YADTQ_PREFIX"] + "mix:queues", f"{ctx.task_id} {ctx.attempt} {this_run()}")
    return n


registry.register(mix_queued, queue=QUEUE)  # as @task(queue=QUEUE) would

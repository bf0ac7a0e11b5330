"""The periodic mix's task: notes each run (`<task id> <attempt> <worker> <pid> <time>`)
in a Redis list, once per run even when Redis is killed under the note (`task_redis.note`)."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import note, this_run
from yadtq import current_task, task


@task
def mix_periodic_tick() -> str:
    ctx = current_task()
    assert ctx is not None
    note(os.environ["YADTQ_PREFIX"] + "mix:periodic", f"{ctx.task_id} {ctx.attempt} {this_run()}")
    return ctx.task_id

"""The workflows mix's tasks: a step that adds one, and a chord callback that sums; both note each run
(`<task id> <worker> <pid> <attempt> <time>`, so a run too many says where and when it ran), once
per run even when Redis is killed under the note (`task_redis.note`)."""

from __future__ import annotations

import os
import time

from worker_farm.mixes.task_redis import note
from yadtq import current_task, task


def _note() -> None:
    ctx = current_task()
    assert ctx is not None
    # Unique to the run (its time), so a note sent again after a lost reply is written once.
    note(os.environ["YADTQ_PREFIX"] + "mix:workflows",
         f"{ctx.task_id} {ctx.worker} {os.getpid()} {ctx.attempt} {time.time():.6f}")


@task
def mix_wf_step(x: int) -> int:
    _note()
    return x + 1


@task
def mix_wf_sum(values: list[int]) -> int:
    _note()
    return sum(values)

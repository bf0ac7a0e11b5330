"""The workflows mix's tasks: a step that adds one, and a chord callback that sums; both note each run."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import ledger as _ledger
from yadtq import current_task, task


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

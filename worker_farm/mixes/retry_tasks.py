"""The retries mix's task: asks for one parked retry, then succeeds."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import note, this_run
from yadtq import Retry, current_task, task


@task
def mix_retry_once(n: int) -> int:
    """Notes `<task id> <attempt> <worker> <pid> <time>` (once per run), asks for a retry in 0.5 s on its
    first attempt, returns `n` after."""
    ctx = current_task()
    assert ctx is not None
    note(os.environ["YADTQ_PREFIX"] + "mix:retries", f"{ctx.task_id} {ctx.attempt} {this_run()}")
    if ctx.attempt == 1:
        raise Retry("once more", delay=0.5)
    return n

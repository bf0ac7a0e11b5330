"""The cancels mix's task: runs a few seconds in short slices, noting each run's start."""

from __future__ import annotations

import os
import time

from worker_farm.mixes.task_redis import note, this_run
from yadtq import current_task, task


@task
def mix_long(seconds: float) -> float:
    """Notes `<task id> <attempt> <worker> <pid> <time>` as it starts (once, through a Redis restart:
    a run that went unnoted could hide a broken promise; `task_redis.note`), then sleeps in slices a
    cancel can interrupt."""
    ctx = current_task()
    assert ctx is not None
    note(os.environ["YADTQ_PREFIX"] + "mix:cancels", f"{ctx.task_id} {ctx.attempt} {this_run()}")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    return seconds

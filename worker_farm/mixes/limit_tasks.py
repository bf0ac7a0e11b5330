"""The limits mix's task: rate-limited farm-wide, notes when (Redis time) and where each run started,
once per run even when Redis is killed under the note (`task_redis.note`)."""

from __future__ import annotations

import os

from worker_farm.mixes.task_redis import ledger as _ledger
from worker_farm.mixes.task_redis import note
from yadtq import current_task, task

RATE = 10  # starts per second, the mix's promise
def mix_paced(n: int) -> int:
    """Notes `<task id> <worker> <Redis time> <pid>` as it starts, returns `n`."""
    ctx = current_task()
    assert ctx is not None
    sec, usec = _ledger().time()
    note(os.environ["YADTQ_PREFIX"] + "mix:paced",
         f"{ctx.task_id} {ctx.worker} {sec + usec / 1e6:.6f} {os.getpid()}")
    return n


task(rate_limit=f"{RATE}/s")(mix_paced)  # registered as "mix_paced"

"""The mixed workload's tasks for YADTQ workers (`yadtq worker --tasks bench.mixed_tasks`).

The Celery twins are in bench/celery_app.py; bench/mixed.py builds the workload.
"""

from __future__ import annotations

import time

from yadtq import current_task, task

try:
    from yadtq.task.outcomes import Retry as _Retry
except ImportError:  # before issue 9's engine: a plain exception, retried after YADTQ_RETRY_BACKOFF (1 s here)
    _Retry = None  # type: ignore[assignment,misc]


@task("bench_quick")
def quick(x: int, y: int) -> int:
    return x + y


@task("bench_nap")
def nap(seconds: float) -> float:
    """Stands for I/O: holds an execution slot without using the CPU."""
    time.sleep(seconds)
    return seconds


@task("bench_flaky", tries=3)
def flaky(x: int) -> int:
    """Fails on its first attempt, succeeds on the retry about 1 s later."""
    ctx = current_task()
    if ctx is not None and ctx.attempt <= 1:
        if _Retry is not None:
            raise _Retry("first attempt fails on purpose", delay=1.0)
        raise RuntimeError("first attempt fails on purpose")
    return x

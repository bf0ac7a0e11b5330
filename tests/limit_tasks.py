"""Test tasks with limits in their decorators, for worker processes (`yadtq worker --tasks limit_tasks`)."""

from __future__ import annotations

from yadtq import task


@task("paced", rate_limit="10/s")
def paced(i: int) -> int:
    return i

"""A task module with a declared schedule (the periodic system test starts a worker with it)."""

from __future__ import annotations

from yadtq import periodic, task


@periodic(every=1, args=["tick"], name="probe-1s")
@task("periodic_probe")
def periodic_probe(tag: str) -> str:
    return tag

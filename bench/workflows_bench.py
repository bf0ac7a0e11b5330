"""Workflows in `make bench`: how long a 1,000-member chord's callback waits after its last member,
and a chain's step overhead (one step's end to the next one's start), on 2 worker processes.

Both read the task records' Redis-time stamps (`finished` of one task, `started` of the next), so
no client clock or polling interval enters the figures. Run once: the chain at a small size.
"""

from __future__ import annotations

import itertools
from typing import Any

from bench.common import percentile, private_services, spawn_workers, stop, workers_serving
from yadtq import YADTQ, chain, chord, group
from yadtq.task.builtins import add, total

FULL = (1000, 50)  # chord members, chain steps
QUICK = (100, 10)


def run(chord_members: int, chain_steps: int) -> dict[str, float]:
    with private_services(partitions=4) as s:
        procs = spawn_workers(s, 2)
        try:
            with YADTQ(s) as q:
                workers_serving(q, 2)
                wid = q.submit_workflow(chord(group(add.s(i, 0) for i in range(chord_members)), total.s()))
                q.result(wid, timeout=600)
                members, callback = _records(q, wid, "add"), _records(q, wid, "total")[0]
                chord_ms = (callback.started - max(r.finished for r in members)) * 1000
                wid = q.submit_workflow(chain(add.s(0, 1), *[add.s(1) for _ in range(chain_steps - 1)]))
                q.result(wid, timeout=300)
                steps = _records(q, wid, "add")
                gaps = [(b.started - a.finished) * 1000 for a, b in itertools.pairwise(steps)]
        finally:
            stop(procs)
    return {"chord_callback_ms": chord_ms, "chain_step_p50_ms": percentile(gaps, 50),
            "chain_step_p99_ms": percentile(gaps, 99), "chord_members": float(chord_members),
            "chain_steps": float(chain_steps)}


def _records(q: YADTQ, wid: str, task: str) -> list[Any]:
    """The task records of `wid`'s nodes running `task`, in node order."""
    return q.backend.get_many([n.task_id for n in q.workflow(wid).nodes if n.task == task and n.task_id])

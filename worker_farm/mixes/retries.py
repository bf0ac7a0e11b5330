"""Parked retries under faults: a task that asks for a retry in 0.5 s waits in Redis
(not in any worker), so broker and Redis restarts and worker kills must neither
lose the retry nor end the task before it ran again."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


@dataclass
class RetriesMix:
    count: int = 40
    name: str = "retries"
    modules: tuple[str, ...] = ("worker_farm.mixes.retry_tasks",)
    worker_args: tuple[str, ...] = ()
    ids: list[str] = field(default_factory=list)

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        self.ids = q.submit_many([("mix_retry_once", [n]) for n in range(self.count)])

    def finished(self, q: YADTQ) -> bool:
        records = q.backend.get_many(self.ids)  # a lost record is missing here: not finished
        return len(records) == len(self.ids) and all(rec.status == Status.SUCCESS for rec in records)

    def check(self, q: YADTQ) -> list[str]:
        records = {rec.task_id: rec for rec in q.backend.get_many(self.ids)}
        runs: dict[str, set[int]] = {}
        for line in q.backend.r.lrange(q.settings.prefix + "mix:retries", 0, -1):
            tid, attempt, *_ = str(line).split()
            runs.setdefault(tid, set()).add(int(attempt))
        problems = []
        for n, tid in enumerate(self.ids):
            rec = records.get(tid)
            if rec is None or rec.status != Status.SUCCESS:
                problems.append(f"{tid}: {'no record' if rec is None else rec.status}, expected success")
            elif rec.result != n:
                problems.append(f"{tid}: result {rec.result!r}, expected {n}")
            elif max(runs.get(tid, {0})) < 2:
                # A later attempt, not necessarily the 2nd: a kill may cut one off and count it. The 1st
                # may leave no note (killed between its start and its note: then it asked no retry);
                # any success is a run at attempt 2 or later, as attempt 1 never returns.
                problems.append(f"{tid}: succeeded without its retry (attempts run: {sorted(runs.get(tid, ()))})")
        return problems

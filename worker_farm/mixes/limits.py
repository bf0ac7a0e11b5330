"""Rate limits under faults: a task type limited to 10 starts a second farm-wide must stay
within its rate in every 1-second window (plus one start per worker) while workers are killed
and frozen and the broker and Redis restart, and every task must still end."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker_farm.mixes.limit_tasks import RATE
from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


@dataclass
class LimitsMix:
    count: int = 40
    name: str = "limits"
    modules: tuple[str, ...] = ("worker_farm.mixes.limit_tasks",)
    worker_args: tuple[str, ...] = ()
    ids: list[str] = field(default_factory=list)

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        self.ids = q.submit_many([("mix_paced", [n]) for n in range(self.count)])

    def finished(self, q: YADTQ) -> bool:
        records = q.backend.get_many(self.ids)
        return len(records) == len(self.ids) and all(rec.status == Status.SUCCESS for rec in records)

    def check(self, q: YADTQ) -> list[str]:
        records = {rec.task_id: rec for rec in q.backend.get_many(self.ids)}
        problems = [f"{tid}: {'no record' if (rec := records.get(tid)) is None else rec.status}, expected success"
                    for tid in self.ids if (rec := records.get(tid)) is None or rec.status != Status.SUCCESS]
        starts: list[float] = []
        workers: set[str] = set()
        for line in q.backend.r.lrange(q.settings.prefix + "mix:paced", 0, -1):
            _, worker, started, *_ = str(line).split()
            workers.add(worker)
            starts.append(float(started))
        allowed = RATE + max(1, len(workers))
        peak, at = most_in_one_second(starts)
        if peak > allowed:
            problems.append(f"{peak} starts in the second from {at:.3f} (Redis time): over {RATE}/s "
                            f"by more than one per worker ({len(workers)} workers)")
        return problems


def most_in_one_second(times: list[float]) -> tuple[int, float]:
    """The most starts in any 1-second window, and where that window starts."""
    times = sorted(times)
    best = (0, 0.0)
    j = 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0 + 1e-9:
            j += 1
        best = max(best, (i - j + 1, times[j]))
    return best

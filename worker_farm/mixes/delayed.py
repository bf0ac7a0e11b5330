"""Delayed tasks under faults: tasks submitted with a countdown wait `scheduled` in Redis and are
published by whichever worker takes them when due, so worker kills (between take and publish
too), broker and Redis restarts must neither lose one, nor run one before its eta, nor run one
twice (a run cut off by a kill is run again under a new attempt, never the same attempt twice)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


@dataclass
class DelayedMix:
    count: int = 40
    name: str = "delayed"
    modules: tuple[str, ...] = ("worker_farm.mixes.delayed_tasks",)
    worker_args: tuple[str, ...] = ()
    ids: list[str] = field(default_factory=list)

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        self.ids = q.submit_many([("mix_delayed", [n], {}, {"countdown": round(rng.uniform(0.5, 4.0), 2)})
                                  for n in range(self.count)])

    def finished(self, q: YADTQ) -> bool:
        records = q.backend.get_many(self.ids)  # a lost record is missing here: not finished
        return len(records) == len(self.ids) and all(rec.status == Status.SUCCESS for rec in records)

    def check(self, q: YADTQ) -> list[str]:
        records = {rec.task_id: rec for rec in q.backend.get_many(self.ids)}
        runs: dict[str, list[tuple[int, float]]] = {}
        for line in q.backend.r.lrange(q.settings.prefix + "mix:delayed", 0, -1):
            tid, attempt, at, *_ = str(line).split()
            runs.setdefault(tid, []).append((int(attempt), float(at)))
        problems = []
        for n, tid in enumerate(self.ids):
            rec = records.get(tid)
            seen = runs.get(tid, [])
            attempts = [a for a, _ in seen]
            if rec is None or rec.status != Status.SUCCESS:
                problems.append(f"{tid}: {'no record' if rec is None else rec.status}, expected success")
            elif rec.result != n:
                problems.append(f"{tid}: result {rec.result!r}, expected {n}")
            elif not seen:
                problems.append(f"{tid}: succeeded but never ran")
            elif len(attempts) != len(set(attempts)):
                problems.append(f"{tid}: one attempt ran twice (attempts run: {sorted(attempts)})")
            elif rec.eta is None or min(at for _, at in seen) < rec.eta:
                problems.append(f"{tid}: started {min(at for _, at in seen)} before its eta {rec.eta}")
        return problems

"""Named queues under faults: tasks of a second queue (its own topic) beside the ledger tasks, the
workers serving both. Broker and Redis restarts and worker kills must neither lose one (the
monitor republishes to the queue's own topic) nor run one twice (each attempt runs once)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker_farm.mixes.queue_tasks import QUEUE
from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


@dataclass
class QueuesMix:
    count: int = 40
    name: str = "queues"
    modules: tuple[str, ...] = ("worker_farm.mixes.queue_tasks",)
    worker_args: tuple[str, ...] = ("--queues", f"default,{QUEUE}")
    ids: list[str] = field(default_factory=list)

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        # Half routed by the task's declaration (as the workers announce it), half by the submit's override.
        self.ids = q.submit_many([{"task": "mix_queued", "args": [n], "unchecked": True,
                                   **({"queue": QUEUE} if n % 2 else {})} for n in range(self.count)])

    def finished(self, q: YADTQ) -> bool:
        records = q.backend.get_many(self.ids)
        return len(records) == len(self.ids) and all(rec.status == Status.SUCCESS for rec in records)

    def check(self, q: YADTQ) -> list[str]:
        records = {rec.task_id: rec for rec in q.backend.get_many(self.ids)}
        runs: dict[str, list[int]] = {}
        for line in q.backend.r.lrange(q.settings.prefix + "mix:queues", 0, -1):
            tid, attempt, *_ = str(line).split()
            runs.setdefault(tid, []).append(int(attempt))
        problems = []
        for n, tid in enumerate(self.ids):
            rec = records.get(tid)
            attempts = runs.get(tid, [])
            if rec is None or rec.status != Status.SUCCESS:
                problems.append(f"{tid}: {'no record' if rec is None else rec.status}, expected success")
            elif rec.result != n or rec.queue != QUEUE:
                problems.append(f"{tid}: result {rec.result!r} in queue {rec.queue!r}, expected {n} in {QUEUE!r}")
            elif len(attempts) != len(set(attempts)):
                problems.append(f"{tid}: an attempt ran twice (attempts run: {sorted(attempts)})")
        return problems

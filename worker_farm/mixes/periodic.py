"""Periodic tasks under faults: an every=1 schedule fired by every worker and the monitor at once,
while they are killed and stopped and the broker and Redis restart. Promise: each slot fired
at most once (one task record per slot, as many as the schedule counted) and every slot fired
ran to success, including slots whose scheduler died before publishing or whose message a
broker restart lost. Slots missed while no scheduler could reach Redis are coalesced (the
schedule's catch_up="once"), so the run must show slots firing, not every second filled."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yadtq.errors import YADTQError
from yadtq.store.connection import REDIS_UNAVAILABLE
from yadtq.store.schedules import ScheduleState, slot_task_id
from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ

NAME = "mix-periodic-1s"
# Redis restarting, or the schedule not readable yet: not finished, ask again.
_AWAY: tuple[type[Exception], ...] = (*REDIS_UNAVAILABLE, YADTQError, StopIteration)


@dataclass
class PeriodicMix:
    name: str = "periodic"
    modules: tuple[str, ...] = ("worker_farm.mixes.periodic_tasks",)
    worker_args: tuple[str, ...] = ()
    first_slot: float = 0.0
    stopped: ScheduleState | None = None  # the schedule as it was when the run stopped it
    ids: list[str] = field(default_factory=list)  # task ids of the slots that fired

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        state = q.add_schedule(NAME, "mix_periodic_tick", every=1, unchecked=True)
        self.first_slot = state.last_slot + 1  # the slot under way when added never fires

    def finished(self, q: YADTQ) -> bool:
        try:
            if self.stopped is None:  # the ledger tasks are done: stop firing, then wait for the slots' tasks
                state = q.schedules()
                self.stopped = next(s for s in state if s.spec.name == NAME)
                q.remove_schedule(NAME)
            # Slots fired between the read and the removal are a few seconds past the last one read.
            span = int(self.stopped.last_slot - self.first_slot) + 5
            candidates = [slot_task_id(NAME, self.first_slot + k) for k in range(span + 1)]
            records = q.backend.get_many(candidates)
            self.ids = [r.task_id for r in records]
            return all(r.status == Status.SUCCESS for r in records)
        except _AWAY:
            return False

    def check(self, q: YADTQ) -> list[str]:
        if self.stopped is None:
            return ["the run ended before the schedule was stopped"]
        problems = []
        records = {r.task_id: r for r in q.backend.get_many(self.ids)}
        upto = slot_task_id(NAME, self.stopped.last_slot)
        counted = [i for i in self.ids if i <= upto]  # ids sort by slot time
        if len(counted) != self.stopped.fired:
            problems.append(f"{self.stopped.fired} slots fired by the schedule's count, {len(counted)} tasks recorded")
        if self.stopped.fired < 10:
            problems.append(f"only {self.stopped.fired} slots fired in the run")
        for tid in self.ids:
            rec = records.get(tid)
            if rec is None or rec.status != Status.SUCCESS:
                problems.append(f"{tid}: {'no record' if rec is None else rec.status}, expected success")
        # A note per run (`<task id> <attempt> <worker> <pid> <time>`): counted by task id and attempt.
        notes = [str(line).split() for line in q.backend.r.lrange(q.settings.prefix + "mix:periodic", 0, -1)]
        runs = Counter(f"{tid} {attempt}" for tid, attempt, *_ in notes)
        problems += [f"{run}: ran {n} times with the same attempt" for run, n in runs.items() if n > 1]
        ran = {tid for tid, *_ in notes}
        problems += [f"{tid}: succeeded with no run noted" for tid in self.ids if tid not in ran]
        return problems

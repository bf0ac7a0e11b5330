"""Quarantines in a chaos run: seen, requeued as an operator would, and judged.

A worker killed every few seconds can cut off the runs of an innocent task
`YADTQ_MAX_LOST_RUNS` times: YADTQ cannot tell that from a task that kills its
worker, and quarantines it (docs/tasks.md, Quarantine). That is the promise
kept, not a task lost, as long as the quarantine had its cause: the run
requeues each quarantined task it sees, so every task still has to end
`success`, and the judge checks that each quarantine followed that many runs
in the ledger (each one cut off by a fault, as every earlier run must be).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from kafka.errors import KafkaError

from yadtq.client.client import YADTQ
from yadtq.errors import YADTQError
from yadtq.store.connection import RedisError
from yadtq.task.status import Status

QUARANTINED = "quarantined:"  # how step.lua's quarantine error begins


class Requeuer:
    """Requeues the ledger tasks found quarantined; `times` counts each task's quarantines."""

    def __init__(self, q: YADTQ, every: float = 1.0) -> None:
        self.q, self.every = q, every
        self.times: Counter[str] = Counter()
        self._owed: set[str] = set()  # reset to queued, but its publish failed: publish again
        self._next = 0.0

    @property
    def owes(self) -> bool:
        """A requeue failed half way: the next sweep must send it."""
        return bool(self._owed)

    def sweep(self, pending: Sequence[str]) -> None:
        """Requeues the quarantined tasks among `pending` (the ones not succeeded yet), at most
        once per `every` seconds. A fault in the way (Redis or the broker restarting) leaves the
        rest for the next sweep."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        try:
            records = [rec for i in range(0, len(pending), 5000)
                       for rec in self.q.backend.get_many(list(pending[i:i + 5000]))]
        except RedisError:
            return
        for rec in records:
            quarantined = rec.status == Status.FAILED and (rec.error or "").startswith(QUARANTINED)
            if quarantined and rec.task_id not in self._owed:
                self.times[rec.task_id] += 1  # once per quarantine, however many tries its requeue takes
                self._owed.add(rec.task_id)
            if rec.task_id not in self._owed or not (quarantined or rec.status == Status.QUEUED):
                continue
            try:
                self.q.requeue(rec.task_id)
                self._owed.discard(rec.task_id)
            except (YADTQError, RedisError, KafkaError):
                continue  # the record may be queued already (requeue says so): sent on the next sweep


def without_cause(times: Counter[str], ledger: Sequence[tuple[str, int, int]], max_lost_runs: int) -> list[str]:
    """The quarantines the ledger does not explain: a task quarantined `k` times must have run at
    least `k * max_lost_runs` times before its last run (every run before the last is judged apart:
    it must have been cut off by a fault)."""
    runs = Counter(tid for tid, _, _ in ledger)
    return [f"task {tid} quarantined {k} time(s) after {runs[tid]} run(s), fewer than {k * max_lost_runs + 1}"
            for tid, k in sorted(times.items()) if runs[tid] < k * max_lost_runs + 1]

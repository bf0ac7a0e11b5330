"""Pushed results under faults: a thread per task waits in `YADTQ.wait` (woken by the outcome's
announcement over Redis pub/sub) while workers die and Redis and the broker restart. An
announcement made while a subscription is down is lost, so every waiter must still return
the stored outcome (by its slow poll, subscribing again) and none may raise or hang."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yadtq.store.backend import TaskRecord
from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


@dataclass
class LiveMix:
    count: int = 20
    name: str = "live"
    modules: tuple[str, ...] = ()  # the built-in `sleep` task reports its progress
    worker_args: tuple[str, ...] = ()
    ids: list[str] = field(default_factory=list)
    got: dict[str, TaskRecord | BaseException] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        self.ids = q.submit_many([("sleep", [round(rng.uniform(0.1, 0.6), 2)]) for _ in range(self.count)])
        for tid in self.ids:
            t = threading.Thread(target=self._wait, args=(q, tid), name=f"live-mix-{tid[:8]}", daemon=True)
            t.start()
            self.threads.append(t)

    def _wait(self, q: YADTQ, tid: str) -> None:
        try:
            self.got[tid] = q.wait(tid)
        except BaseException as exc:  # judged by `check`: a waiter must not raise
            self.got[tid] = exc

    def finished(self, q: YADTQ) -> bool:
        return not any(t.is_alive() for t in self.threads)

    def check(self, q: YADTQ) -> list[str]:
        stored = {rec.task_id: rec for rec in q.backend.get_many(self.ids)}
        problems = []
        for tid in self.ids:
            rec, got = stored.get(tid), self.got.get(tid)
            if rec is None or rec.status != Status.SUCCESS:
                problems.append(f"{tid}: {'no record' if rec is None else rec.status}, expected success")
            elif got is None:
                problems.append(f"{tid}: its waiter is still waiting although the task is {rec.status}")
            elif isinstance(got, BaseException):
                problems.append(f"{tid}: its waiter raised {type(got).__name__}: {got}")
            elif (got.status, got.result) != (rec.status, rec.result):
                problems.append(f"{tid}: its waiter returned {got.status} {got.result!r}, stored {rec.result!r}")
        return problems

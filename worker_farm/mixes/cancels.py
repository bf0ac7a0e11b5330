"""Cancels under faults: some long tasks are cancelled while they wait, some while they run,
while workers are killed and the broker and Redis restart. The promise: a task whose cancel
returned is never started afterwards (no run of an attempt claimed after it) and ends
`cancelled`; a task the cancel found finished had ended `success` before."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yadtq.store.backend import TaskNotCancellable
from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


@dataclass
class CancelsMix:
    count: int = 18
    seconds: float = 3.0
    name: str = "cancels"
    modules: tuple[str, ...] = ("worker_farm.mixes.cancel_tasks",)
    worker_args: tuple[str, ...] = ()
    ids: list[str] = field(default_factory=list)
    cancelled: dict[str, int] = field(default_factory=dict)  # id -> its attempts when the cancel returned
    finished_first: set[str] = field(default_factory=set)  # the cancel found it finished
    _thread: threading.Thread | None = None

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        self.ids = q.submit_many([("mix_long", [self.seconds]) for _ in range(self.count)])
        # A third cancelled at once (most still wait), a third once seen running, a third left to finish.
        at_once, running = self.ids[0::3], self.ids[1::3]
        self._thread = threading.Thread(target=self._cancel, args=(q, at_once, running), daemon=True,
                                        name="mix-cancels")
        self._thread.start()

    def _cancel(self, q: YADTQ, at_once: list[str], running: list[str]) -> None:
        for tid in at_once:
            self._cancel_one(q, tid)
        for tid in running:
            until = time.monotonic() + 20
            while time.monotonic() < until and self._status(q, tid) not in (Status.PROCESSING, Status.SUCCESS):
                time.sleep(0.1)
            self._cancel_one(q, tid)

    @staticmethod
    def _status(q: YADTQ, tid: str) -> str | None:
        try:
            return q.status(tid).status
        except Exception:  # Redis restarting: ask again
            return None

    def _cancel_one(self, q: YADTQ, tid: str) -> None:
        until = time.monotonic() + 60
        while time.monotonic() < until:  # through Redis restarts, until a definite answer
            try:
                self.cancelled[tid] = q.cancel(tid, by="chaos-mix").attempts
                return
            except TaskNotCancellable as exc:
                if exc.status != Status.CANCELLED:
                    self.finished_first.add(tid)
                    return
                # an earlier try was applied, its reply lost: no claim is made after a cancel
                self.cancelled[tid] = q.status(tid).attempts
                return
            except Exception:
                time.sleep(0.2)

    def finished(self, q: YADTQ) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return False
        records = q.backend.get_many(self.ids)
        return len(records) == len(self.ids) and all(rec.done for rec in records)

    def check(self, q: YADTQ) -> list[str]:
        records = {rec.task_id: rec for rec in q.backend.get_many(self.ids)}
        runs: dict[str, set[int]] = {}
        for line in q.backend.r.lrange(q.settings.prefix + "mix:cancels", 0, -1):
            tid, attempt, *_ = str(line).split()
            runs.setdefault(tid, set()).add(int(attempt))
        problems = []
        chosen = set(self.ids[0::3]) | set(self.ids[1::3])
        for tid in self.ids:
            rec = records.get(tid)
            status = rec.status if rec is not None else "no record"
            if tid in self.cancelled:
                late = sorted(a for a in runs.get(tid, ()) if a > self.cancelled[tid])
                if late:
                    problems.append(f"{tid}: attempt(s) {late} started after its cancel returned")
                if status != Status.CANCELLED:
                    problems.append(f"{tid}: {status} after its cancel returned, expected cancelled")
            elif tid in self.finished_first or tid not in chosen:
                if status != Status.SUCCESS:
                    problems.append(f"{tid}: {status}, expected success")
            else:
                problems.append(f"{tid}: its cancel never got an answer")
        return problems

"""Crash injection (a plugin like any middleware): real process exits (`os._exit`) at chosen points.

SPEC is TRIGGER[@POINT]:

* `after:3-5`: exit at a random task between the 3rd and 5th this process
  receives (the seeds' failure-prone consumer); `after:4` is exactly the 4th.
* `prob:0.02`: exit with that probability at each task.

POINT is where in the task's life the exit happens:

* `before-claim`: message polled, not yet claimed in Redis;
* `during` (default): claimed and run, its outcome not yet stored: to the
  queue this is a task cut off mid-run (its side effects happened);
* `after-complete`: outcome stored in Redis, offset not yet committed.
"""

from __future__ import annotations

import logging
import os
import random
import sys

from yadtq.errors import ConfigError
from yadtq.worker.context import WorkerContext
from yadtq.worker.jobs import Finished
from yadtq.worker.middleware import Middleware
from yadtq.worker.records import TaskWork
from yadtq.worker.tracker import Entry

log = logging.getLogger(__name__)
POINTS = ("before-claim", "during", "after-complete")
CRASH_EXIT_CODE = 70


class CrashInjector(Middleware):
    def __init__(self, point: str, at_task: int | None = None, probability: float = 0.0,
                 seed: int | None = None) -> None:
        if point not in POINTS:
            raise ConfigError(f"crash point must be one of {', '.join(POINTS)}, got {point!r}")
        self.point = point
        self.at_task = at_task
        self.probability = probability
        self.rng = random.Random(seed)
        self.seen = 0

    @classmethod
    def parse(cls, spec: str, seed: int | None = None) -> CrashInjector:
        trigger, _, point = spec.partition("@")
        kind, _, value = trigger.partition(":")
        rng = random.Random(seed)
        try:
            if kind == "after":
                lo, _, hi = value.partition("-")
                low, high = int(lo), int(hi or lo)
                if not 1 <= low <= high:
                    raise ValueError("want after:N or after:N-M with 1 <= N <= M")
                return cls(point or "during", at_task=rng.randint(low, high), seed=seed)
            if kind == "prob":
                p = float(value)
                if not 0 < p <= 1:
                    raise ValueError("want prob:P with 0 < P <= 1")
                return cls(point or "during", probability=p, seed=seed)
        except ValueError as exc:
            raise ConfigError(f"bad --crash {spec!r}: {exc}") from None
        raise ConfigError(f"bad --crash {spec!r}: want after:N-M or prob:P, optionally @{'|@'.join(POINTS)}")

    def _maybe_crash(self, ctx: WorkerContext, entry: Entry, point: str) -> None:
        if point != self.point:
            return
        self.seen += 1
        hit = (self.at_task is not None and self.seen >= self.at_task) or (
            self.probability > 0 and self.rng.random() < self.probability)
        if hit:
            work = entry.work
            task_id = work.task_id if isinstance(work, TaskWork) else None
            ctx.events.emit("crash_injected", worker=ctx.name, task_id=task_id, point=point,
                               partition=entry.partition, offset=entry.offset)
            ctx.events.flush()
            print(f"CRASH {ctx.name} pid {os.getpid()} at {point} of task #{self.seen} ({task_id})",
                  file=sys.stderr, flush=True)
            os._exit(CRASH_EXIT_CODE)

    def before_claim(self, ctx: WorkerContext, entry: Entry) -> None:
        self._maybe_crash(ctx, entry, "before-claim")

    def after_run(self, ctx: WorkerContext, finished: Finished) -> Finished:
        self._maybe_crash(ctx, finished.job.entry, "during")
        return finished

    def after_complete(self, ctx: WorkerContext, finished: Finished, stored: bool) -> None:
        self._maybe_crash(ctx, finished.job.entry, "after-complete")

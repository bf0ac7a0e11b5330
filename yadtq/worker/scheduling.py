"""The `Schedules` policy: every worker registers the schedules its task modules declare
(`@periodic`) and runs a scheduler (`yadtq.client.scheduler`) on its loop's tick.

Schedulers in many workers race harmlessly: each slot fires once (see the scheduler). The
policy keeps its own Redis connection (a short socket timeout, no retries) and does nothing
while the worker's Redis is away; it looks again when the earliest schedule is due, at least
once a second, so a schedule added at run time is seen within a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from yadtq.client.scheduler import Scheduler
from yadtq.errors import BackendUnavailable
from yadtq.store.connection import REDIS_UNAVAILABLE, connect_redis
from yadtq.store.schedules import ScheduleStore
from yadtq.task.messages import TaskMessage
from yadtq.task.periodic import ScheduleSpec, declared
from yadtq.task.registry import registry
from yadtq.worker.context import WorkerContext
from yadtq.worker.middleware import Middleware

log = logging.getLogger(__name__)
_UNAVAILABLE: tuple[type[Exception], ...] = (*REDIS_UNAVAILABLE, BackendUnavailable)
OUTAGE_PAUSE = 2.0  # seconds between tries while Redis does not answer


class Schedules(Middleware):
    def __init__(self, specs: Sequence[ScheduleSpec] | None = None) -> None:
        self._specs = specs  # None: what `@periodic` declared in this process, read at the first tick
        self._store: ScheduleStore | None = None
        self._scheduler: Scheduler | None = None
        self._registered = False
        self._next = 0.0

    def on_tick(self, ctx: WorkerContext) -> None:
        now = time.monotonic()
        if now < self._next or not ctx.store.available:
            return
        try:
            scheduler = self._scheduler or self._connect(ctx)
            if not self._registered:
                self._register(ctx, scheduler.store)
            self._next = now + scheduler.tick()
        except _UNAVAILABLE as exc:
            log.warning("scheduler: Redis unavailable (%s); trying again in %gs", exc, OUTAGE_PAUSE)
            self._next = now + OUTAGE_PAUSE

    def on_notice(self, ctx: WorkerContext, event: str, fields: dict[str, Any]) -> None:
        if event == "worker_left" and self._store is not None:
            self._store.r.close()

    def _connect(self, ctx: WorkerContext) -> Scheduler:
        s = ctx.settings
        self._store = ScheduleStore(connect_redis(s, socket_timeout=max(2.0, s.connect_timeout), retries=0), s)
        self._scheduler = Scheduler(self._store, lambda messages: _publish(ctx, messages), who=ctx.name,
                                    events=ctx.events)
        return self._scheduler

    def _register(self, ctx: WorkerContext, store: ScheduleStore) -> None:
        for spec in declared() if self._specs is None else self._specs:
            verdict = store.define(spec, origin="decorator")
            if verdict != "same":
                log.info("schedule %s (%s: %s) registered (%s)", spec.name, spec.task, spec.when, verdict)
                ctx.events.emit("schedule_defined", worker=ctx.name, schedule=spec.name, task=spec.task,
                                when=spec.when, verdict=verdict)
        self._registered = True


def _publish(ctx: WorkerContext, messages: Sequence[TaskMessage]) -> bool:
    for m in messages:
        # A periodic task goes to the queue its @task(queue=...) names.
        queue = registry.get(m.task).queue if m.task in registry else None
        ctx.publisher.publish(ctx.settings.topic_for(queue), m.record_key, m.encode())
    return ctx.publisher.flush()

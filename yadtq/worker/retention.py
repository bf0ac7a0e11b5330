"""The retention sweep as a worker's housekeeping timer (yadtq.store.retention says what it does).

Every worker announces its tasks' own `result_ttl` and offers to sweep about once a second; one
SET NX in Redis lets one sweep through per `sweep_interval` across the farm, so more workers do not
mean more sweeping. A sweep is bounded (rounds of a thousand within a few tens of milliseconds), so
the loop's turn it runs in stays short.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from yadtq.task.registry import Registry
from yadtq.worker.context import WorkerContext
from yadtq.worker.middleware import Middleware

log = logging.getLogger(__name__)


class RetentionSweep(Middleware):
    OFFER_EVERY = 1.0  # seconds between offers to sweep
    ANNOUNCE_EVERY = 60.0  # seconds between announcements (a Redis that lost them has them again soon)

    def __init__(self, task_ttls: Mapping[str, float | None]) -> None:
        self.task_ttls = dict(task_ttls)
        self._offered = -float("inf")
        self._announced = -float("inf")

    @classmethod
    def of(cls, registry: Registry) -> RetentionSweep:
        return cls({t.name: t.result_ttl for t in registry})

    def on_tick(self, ctx: WorkerContext) -> None:
        if not ctx.store.available:
            return
        now = time.monotonic()
        if now - self._offered < self.OFFER_EVERY:
            return
        self._offered = now
        if now - self._announced >= self.ANNOUNCE_EVERY:
            ctx.store.announce_task_ttls(self.task_ttls)
            self._announced = now
        swept = ctx.store.sweep_retention()
        if swept:
            log.debug("retention: %s", swept)

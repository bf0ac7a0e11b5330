"""Publishes delayed tasks once they are due: every worker runs this (a standby worker does not).

Taking is atomic in Redis (yadtq.store.delayed), so any number of workers
share the work and each due task is taken by one of them; a taken task is
confirmed only once the broker has it, so one lost with its worker (kill -9)
or a broker outage is taken again after the hold. Each look is bounded: a
batch of at most `BATCH` tasks, and batches only while they come back full
and the look's time budget lasts, so the loop never stalls behind a burst.
"""

from __future__ import annotations

import logging
import time

from yadtq.store.delayed import BATCH
from yadtq.worker.context import WorkerContext
from yadtq.worker.middleware import Middleware

log = logging.getLogger(__name__)


class DueTasks(Middleware):
    """On the loop's tick: take the due delayed tasks, publish them to the tasks topic, confirm them."""

    EVERY = 0.1  # seconds between looks: a due task waits about half of this on average
    BUDGET = 0.5  # seconds one look may spend on a burst before the loop gets its turn back

    def __init__(self) -> None:
        self._last = 0.0

    def on_tick(self, ctx: WorkerContext) -> None:
        if not ctx.store.available or ctx.standby:
            return
        now = time.monotonic()
        if now - self._last < self.EVERY:
            return
        self._last = now
        while self._publish_batch(ctx) and time.monotonic() - now < self.BUDGET:
            pass

    @staticmethod
    def _publish_batch(ctx: WorkerContext) -> bool:
        """One batch; True when it was full (more may be due)."""
        taken = ctx.store.take_scheduled(BATCH)
        if not taken:
            return False
        try:
            for due in taken:
                m = due.message
                ctx.publisher.publish(ctx.settings.topic_for(m.queue), m.record_key, m.encode())
        except Exception as exc:  # taken and re-armed: published again after the hold
            log.warning("due delayed tasks not published yet: %s", exc)
            return False
        if not ctx.publisher.flush():
            return False
        ctx.store.confirm_scheduled(taken)
        ctx.events.emit("tasks_released", worker=ctx.name, count=len(taken), reason="delayed task due")
        return len(taken) >= BATCH

"""Tasks over their rate or concurrency limit: held aside in this worker until due.

The claim step in Redis judges the limits (yadtq/store/lua/step.lua) and answers
`Limited(delay)` instead of a claim. The record then waits in its partition's buffer
like a keyed retry: it holds no slot, and the records behind it, of any task name,
go on. Its task name is gated here for the same delay, so this worker does not send
the name's other buffered records to Redis only to hear the same answer: a saturated
limit costs one claim per free slot per due time, never a loop.

A concurrency limit has no due time: Redis asks for a short wait (0.1 s), and the
record tries again then (a slot frees when a run ends or its lease lapses).
"""

from __future__ import annotations

import logging
import time

from yadtq.store.claim_replies import CONCURRENCY, Limited
from yadtq.store.limits import LimitStore
from yadtq.task.registry import Registry
from yadtq.worker.outages import RedisOutages
from yadtq.worker.records import TaskWork
from yadtq.worker.tracker import Entry, PartitionTracker

log = logging.getLogger(__name__)

REASONS = {CONCURRENCY: "concurrency limit"}
RATE_REASON = "rate limit"


class LimitGates:
    """Per task name, the monotonic time before which its records are not claimed, and why."""

    def __init__(self, tracker: PartitionTracker, store: LimitStore, registry: Registry,
                 outages: RedisOutages) -> None:
        self.tracker = tracker
        self._gates: dict[str, tuple[float, str]] = {}
        # The decorators' limits, so the CLI and API show them before anything runs.
        outages.call(lambda: store.register(registry), None)

    def limited(self, entry: Entry, verdict: Limited) -> None:
        """Redis said `entry` is over its limit: hold it (and its name) aside until due."""
        assert isinstance(entry.work, TaskWork)
        until = time.monotonic() + max(verdict.delay, 0.0)
        reason = REASONS.get(verdict.reason, RATE_REASON)
        self._gates[entry.work.message.task] = (until, reason)
        self.tracker.hold(entry, until, reason)

    def gated(self, entry: Entry, now: float) -> bool:
        """True (and `entry` held until its name's gate lifts) when its name is gated."""
        if not isinstance(entry.work, TaskWork):
            return False
        gate = self._gates.get(entry.work.message.task)
        if gate is None:
            return False
        if gate[0] <= now:
            del self._gates[entry.work.message.task]
            return False
        self.tracker.hold(entry, gate[0], gate[1])
        return True

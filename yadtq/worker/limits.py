"""Tasks over their rate or concurrency limit: held aside in this worker until due.

The claim step in Redis judges the limits (yadtq/store/lua/step.lua). A queued task
without an ordering key over its rate is booked a start there and never comes here: Redis
answers `Early` (held in the buffer until its start, yadtq.worker.dispatch) or, when its
partition's buffer is crowded (`Claim.park`), `Parked` (it waits in Redis as a parked retry
does and is published again just before its start), so a backlog larger than the buffer
does not pause its partition.

A task over its concurrency limit in a crowded partition is not gated: its claim parks it
in Redis for a lease (there is no start to book), and it is published again then.

The others (a concurrency limit, a keyed task over its rate, a lapsed run) are answered
`Limited(delay)` instead of a claim. The record then waits in its partition's buffer like a
keyed retry: it holds no slot, and the records behind it, of any task name, go on. Its task
name is gated here for the same delay, so this worker does not send the name's other buffered
records to Redis only to hear the same answer. When the gate lifts, one record of the name
goes first (a probe), then twice as many each step in which one ran (slow start), so the free
slots go to other task names meanwhile: a saturated limit costs about one claim per due time,
never a loop.

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
PROBE_WAIT = 0.005  # seconds the records over a step's allowance wait for its verdicts
MAX_ALLOWED = 64  # an allowance that grew this far is dropped: the name is not limiting now


class LimitGates:
    """Per task name, the monotonic time before which its records are not claimed, and why; and
    for a name answered Limited lately, how many of its records one step may claim (one, doubling
    with each step in which one ran, back to one at the next Limited: slow start)."""

    def __init__(self, tracker: PartitionTracker, store: LimitStore, registry: Registry,
                 outages: RedisOutages) -> None:
        self.tracker = tracker
        self._gates: dict[str, tuple[float, str]] = {}
        self._allowed: dict[str, int] = {}  # name -> claims one step may make (absent: no bound)
        self._claimed: dict[str, int] = {}  # name -> claims in the step being picked
        self._grown: set[str] = set()  # names whose allowance grew in the last step
        # The decorators' limits, so the CLI and API show them before anything runs.
        outages.call(lambda: store.register(registry), None)

    def limited(self, entry: Entry, verdict: Limited) -> None:
        """Redis said `entry` is over its limit: hold it (and its name) aside until due."""
        assert isinstance(entry.work, TaskWork)
        name = entry.work.message.task
        until = time.monotonic() + max(verdict.delay, 0.0)
        reason = REASONS.get(verdict.reason, RATE_REASON)
        self._gates[name] = (until, reason)
        self._allowed[name] = 1
        self.tracker.hold(entry, until, reason)

    def ran(self, task: str) -> None:
        """A claim of `task` was granted: the next step may claim twice as many."""
        allowed = self._allowed.get(task)
        if allowed is None or task in self._grown:
            return
        self._grown.add(task)
        if allowed >= MAX_ALLOWED:
            del self._allowed[task]
        else:
            self._allowed[task] = allowed * 2

    def new_step(self) -> None:
        self._claimed.clear()
        self._grown.clear()

    def gated(self, entry: Entry, now: float) -> bool:
        """True (and `entry` held aside) when its name is gated, or has had its claims in this step."""
        if not isinstance(entry.work, TaskWork):
            return False
        if entry.order_key is None and self.tracker.crowded(entry.partition):
            return False  # its claim asks to park it (Claim.park): it leaves the buffer if still over
        name = entry.work.message.task
        gate = self._gates.get(name)
        if gate is not None and gate[0] > now:
            self.tracker.hold(entry, gate[0], gate[1])
            return True
        if gate is not None:
            del self._gates[name]
        allowed = self._allowed.get(name)
        if allowed is None:
            return False
        claimed = self._claimed.get(name, 0)
        if claimed >= allowed:  # the rest wait for this step's verdicts
            self.tracker.hold(entry, now + PROBE_WAIT, RATE_REASON)
            return True
        self._claimed[name] = claimed + 1
        return False

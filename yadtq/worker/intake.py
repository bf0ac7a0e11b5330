"""Records coming in: polling the source, applying rebalances, triaging and buffering what
was polled, and whether anything is taken in at all.

Intake closes during a Redis outage and while paused by command; the consumer keeps
polling either way (group membership), its partitions are only sought back to the
tracker's next offsets when intake opens again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.task.registry import Registry
from yadtq.worker.middleware import Hooks
from yadtq.worker.outages import RedisOutages
from yadtq.worker.placement import Placement
from yadtq.worker.records import Record, TaskWork, triage
from yadtq.worker.source import ASSIGNED, TaskSource
from yadtq.worker.tracker import PartitionTracker

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, settings: Settings, registry: Registry, name: str, *, tracker: PartitionTracker,
                 source: TaskSource, placement: Placement, outages: RedisOutages, hooks: Hooks,
                 events: EventLog) -> None:
        self.settings = settings
        self.registry = registry
        self.name = name
        self.tracker = tracker
        self.source = source
        self.placement = placement
        self.outages = outages
        self.hooks = hooks
        self.events = events
        self.paused = False  # by a `pause` command (until `resume`)
        self.last_poll = 0.0  # monotonic time of the last poll
        self.joined = False  # given its first assignment (until then the worker says it is joining)

    # -- open and closed ---------------------------------------------------------------
    def resume(self, partitions: Sequence[int]) -> None:
        """Fetching goes on where each partition's buffer ends: what was dropped is fetched again."""
        self.source.seek(self.tracker.refetch_offsets(partitions))
        self.source.resume(partitions)

    def close(self) -> None:
        self.tracker.closed = True

    def open(self) -> None:
        self.tracker.closed = False
        self.resume(self.tracker.partitions)

    # -- polling -----------------------------------------------------------------------
    def apply_rebalances(self) -> None:
        for event in self.source.rebalances():
            for p in event.partitions:
                if event.kind == ASSIGNED:
                    self.tracker.assign(p, event.starts.get(p))
                else:
                    self.tracker.revoke(p)
            if event.kind == ASSIGNED:
                self.source.resume(event.partitions)  # one kept across the rebalance may still be held
                self.joined = True
            if event.kind == ASSIGNED and event.partitions:
                self.placement.place(event.partitions, event.starts)
            self.hooks.notice(f"partitions_{event.kind}", partitions=list(event.partitions))
            self.events.flush()
            if event.partitions or event.kind == ASSIGNED:  # the farm and tests read this line
                log.info("%s %s partitions %s", self.name, event.kind, list(event.partitions))

    def poll(self, timeout: float) -> None:
        if self.outages.down:
            timeout = min(max(timeout, 0.2), self.outages.down_until - time.monotonic())
        was_connected = self.source.connected
        records = self.source.poll(max(timeout, 0.0), self.tracker.room(self.settings.max_poll_records))
        if was_connected != self.source.connected:
            self.hooks.notice("connection_restored" if self.source.connected else "connection_lost", service="kafka")
        self.last_poll = time.monotonic()
        self.events.flush()
        self.apply_rebalances()
        for rec in records:
            self._buffer(rec)
        if full := self.tracker.filled():  # before the next poll, which would bring more of them
            self.source.pause(full)
            self.hooks.notice("partitions_paused", partitions=full, reason="buffer full")
        if again := self.tracker.seek_backs():
            self.source.seek(again)

    def _buffer(self, rec: Record) -> None:
        if not self.tracker.accepts(rec):
            self.tracker.dropped(rec)
            return
        work = triage(rec, self.registry, self.settings.max_message_bytes)
        entry = self.tracker.add(rec, work)
        if entry is not None and isinstance(work, TaskWork):
            self.hooks.notice("task_received", task_id=work.task_id, task=work.message.task, worker=self.name,
                              partition=rec.partition, offset=rec.offset)

"""The loop's timed chores, each at its own interval, done once a turn when due: commit
offsets, publish the snapshot the heartbeat sends, obey pause/resume/stop commands and
cancel orders for running tasks (`cancel_run`), give
the policies their tick, check the broker's epoch, notice the end of a run, and pause or
resume partitions as their buffers fill and drain.

Chores that need Redis wait while an outage's backoff runs.

While a task claimed here has not finished, the chores wait (up to `BUSY_DEFER`): they are
Redis and Kafka round trips on the loop's thread, and a quick task that ends meanwhile would
have its outcome stored only after them. On a shared 2-core machine at 100 tasks/s on Apache
Kafka they were most of the wait between a task's end and its outcome's step in the slowest
5 % of tasks (bench/latency_hops.py). A worker that is never idle still gets every chore, at
most `BUSY_DEFER` late.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from yadtq.config import Settings
from yadtq.store.connection import RedisClient
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.live_state import LiveState
from yadtq.store.worker_commands import cancel_order, take_commands
from yadtq.worker.intake import Intake
from yadtq.worker.middleware import Hooks
from yadtq.worker.outages import RedisOutages
from yadtq.worker.placement import Placement
from yadtq.worker.tracker import PartitionTracker

log = logging.getLogger(__name__)


class Housekeeping:
    BUSY_DEFER = 0.05  # seconds the chores may wait for a running task; the shortest chore interval

    def __init__(self, settings: Settings, name: str, *, client: RedisClient, keys: Keys, live: LiveState,
                 tracker: PartitionTracker, intake: Intake, placement: Placement, outages: RedisOutages,
                 hooks: Hooks, commit: Callable[[], None], publish_snapshot: Callable[[], None],
                 stopped: threading.Event, started_at: float, cancel_run: Callable[[str, str], None]) -> None:
        self.settings = settings
        self.name = name
        self.redis = client
        self.keys = keys
        self.space = KeySpace.of(settings)  # on a Redis Cluster, cancel orders sit on their tasks' shards
        self.live = live
        self.tracker = tracker
        self.intake = intake
        self.placement = placement
        self.outages = outages
        self.hooks = hooks
        self.commit = commit
        self.publish_snapshot = publish_snapshot
        self.stopped = stopped  # set: the worker is stopping (a `stop` command or the end of the run sets it)
        self.started_at = started_at  # an end of run completed before this is an earlier run's
        self.cancel_run = cancel_run  # (task id, fence): interrupt that run, if it is still ours
        self._last = {"commit": 0.0, "control": 0.0, "end": 0.0, "snapshot": 0.0, "epoch": 0.0}
        self._ran = 0.0  # monotonic time of the last turn whose chores ran

    def _due(self, what: str, every: float) -> bool:
        now = time.monotonic()
        if now - self._last[what] < every:
            return False
        self._last[what] = now
        return True

    def run(self, busy: bool = False) -> None:
        """The chores due; none while `busy` (a task is running) unless they waited `BUSY_DEFER`."""
        now = time.monotonic()
        if busy and now - self._ran < self.BUSY_DEFER:
            return
        self._ran = now
        if self._due("commit", 0.05):
            self.commit()
        if self._due("snapshot", 0.1):
            self.publish_snapshot()
        redis_up = not self.outages.down
        if redis_up and self._due("control", 0.5):
            self._obey_commands()
        self.hooks.call("on_tick")  # parked retries are published here (`ParkedRetries`)
        if redis_up and self._due("epoch", 2.0):
            self.placement.check_broker_epoch()
        if redis_up and self._due("end", 0.5):
            completed = self.outages.call(lambda: self.live.end_completed_at(self.settings.topic), None)
            if completed and completed > self.started_at and not self.stopped.is_set():
                log.info("end of run: every partition drained; stopping")
                self.stopped.set()
        if resume := self.tracker.drained():
            self.intake.resume(resume)
            self.hooks.notice("partitions_resumed", partitions=resume)

    def _obey_commands(self) -> None:
        none: list[str] = []
        for command in self.outages.call(lambda: take_commands(self.redis, self.keys, self.name, self.space), none):
            if (order := cancel_order(command)) is not None:
                self.cancel_run(*order)
                continue
            log.info("command %s received", command)
            self.hooks.notice("worker_command", command=command)
            if command == "pause" and not self.intake.paused:
                self.intake.paused = True
                self.intake.close()
            elif command == "resume" and self.intake.paused:
                self.intake.paused = False
                self.intake.open()
            elif command == "stop":
                self.stopped.set()

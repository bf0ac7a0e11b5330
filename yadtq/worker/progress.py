"""Progress reports of running tasks, throttled and written by one thread.

A task calls `current_task().progress(0.4, "resizing")` as often as it likes: the call
only notes the latest value (it never waits on Redis) and wakes the writer. The writer
stores each task's latest value at most once per `progress_interval` (a tight loop costs
a few writes per second); a value held back is written when its interval ends, and the
last value of a run is written before its outcome is stored (`finish`), so the latest
value always lands. Writes are fenced (yadtq.store.progress): a run cut off writes nothing.

Threads: tasks' threads (and the event loop of `async def` tasks) call `report`; the
writer thread and the task's own thread at its end (`finish`) write. `_write_lock`
makes the taking and the writing of values one step, so an older value taken by one
thread never lands after a newer one taken by the other.
"""

from __future__ import annotations

import logging
import threading
import time

from yadtq.config import Settings
from yadtq.store.connection import RedisClient, RedisError
from yadtq.store.progress import ProgressReport, ProgressStore
from yadtq.task.progress import ProgressSink
from yadtq.worker.jobs import Job

log = logging.getLogger(__name__)


class ProgressThrottle:
    """Which reports to write when: per task, the latest value, at most once per `interval`.
    Holds no lock and reads no clock (callers pass `now`), so it is tested alone."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: dict[str, ProgressReport] = {}
        self._written: dict[str, float] = {}  # task id -> when its last value was taken to be written

    def offer(self, report: ProgressReport) -> None:
        """Notes `report` as its task's latest value (a value not yet written is replaced)."""
        self._pending[report.task_id] = report

    def due(self, now: float) -> list[ProgressReport]:
        """The values whose task's interval has ended, taken (they will not be returned again)."""
        out = [r for tid, r in self._pending.items() if self._written.get(tid, -self.interval) + self.interval <= now]
        for r in out:
            del self._pending[r.task_id]
            self._written[r.task_id] = now
        return out

    def next_due(self) -> float | None:
        """When the earliest held-back value falls due (None: nothing held back)."""
        return min((self._written.get(tid, 0.0) + self.interval for tid in self._pending), default=None)

    def finish(self, task_id: str) -> ProgressReport | None:
        """The run of `task_id` ended: its value not yet written (if any), and the task forgotten."""
        self._written.pop(task_id, None)
        return self._pending.pop(task_id, None)


class ProgressWriter:
    """The worker's progress writer: `sink(job)` is what the job's `current_task()` reports to."""

    def __init__(self, store: ProgressStore, interval: float) -> None:
        self.store = store
        self.throttle = ProgressThrottle(interval)
        self._lock = threading.Lock()  # guards the throttle
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yadtq-progress", daemon=True)

    @classmethod
    def of(cls, client: RedisClient, settings: Settings, incarnation: str) -> ProgressWriter:
        """The writer of one worker incarnation (its claims fence the writes)."""
        return cls(ProgressStore(client, settings, incarnation), settings.progress_interval)

    def sink(self, job: Job) -> ProgressSink:
        fence = job.run.fence

        def report(fraction: float, message: str | None) -> None:
            with self._lock:
                self.throttle.offer(ProgressReport(job.task_id, fence, fraction, message))
            self._wake.set()
        return report

    def finish(self, job: Job) -> None:
        """Writes the run's last value not yet written, before its outcome is stored (the task's thread)."""
        with self._write_lock:
            with self._lock:
                last = self.throttle.finish(job.task_id)
            if last is not None:
                self._write([last])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                at = self.throttle.next_due()
            self._wake.wait(None if at is None else max(0.0, at - time.monotonic()))
            self._wake.clear()
            with self._write_lock:
                with self._lock:
                    due = self.throttle.due(time.monotonic())
                self._write(due)

    def _write(self, reports: list[ProgressReport]) -> None:
        if not reports:
            return
        try:
            stored = self.store.write(reports)
        except RedisError as exc:  # progress is advisory: a value lost to an outage is replaced by the next
            log.debug("progress not stored (%s)", exc)
            return
        for r, ok in zip(reports, stored, strict=True):
            if not ok:
                log.debug("progress of %s not stored: its claim is no longer current", r.task_id)

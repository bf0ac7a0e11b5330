"""The worker's built-in policies, as middleware: retries, events and dead letters."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.worker.jobs import ERROR, FAILED, RETRY, SUCCESS, Finished, Job
from yadtq.worker.middleware import FENCED, FOREIGN, QUARANTINED, REJECTED, Middleware
from yadtq.worker.records import Rejected, TaskWork

if TYPE_CHECKING:
    from yadtq.worker.loop import Worker
    from yadtq.worker.tracker import Entry


class Retries(Middleware):
    """Judges a raised error: retry (within the task's tries, after a backoff with jitter) or failed.

    A retry of a task without an ordering key is parked in Redis and published
    again when due, so its partition moves on; one with a key waits in place,
    holding only its key.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def after_run(self, worker: Worker, finished: Finished) -> Finished:
        if finished.status != ERROR:
            return finished
        job = finished.job
        tries = job.task.tries or job.run.tries or self.settings.tries
        if not finished.retryable or job.run.failures + 1 >= tries:
            return finished.but(status=FAILED)
        return finished.but(status=RETRY, delay=self.delay(job, finished.requested_delay))

    def delay(self, job: Job, requested: float | None) -> float:
        if requested is not None:
            return requested
        s = self.settings
        base: float = min(s.retry_backoff * 2.0 ** job.run.failures, s.retry_backoff_max)
        return round(base * random.uniform(0.8, 1.2), 3)


class Events(Middleware):
    """The JSON-lines event stream of a worker's tasks."""

    def __init__(self, events: EventLog) -> None:
        self.events = events

    def _common(self, worker: Worker, job: Job) -> dict[str, object]:
        e = job.entry
        return {"task_id": job.task_id, "task": job.task.name, "worker": worker.name, "partition": e.partition,
                "offset": e.offset, "attempt": job.run.attempt}

    def before_run(self, worker: Worker, job: Job) -> None:
        self.events.emit("task_started", **self._common(worker, job))

    def after_complete(self, worker: Worker, finished: Finished, stored: bool) -> None:
        common = {**self._common(worker, finished.job), "duration": finished.duration}
        if not stored:
            self.events.emit("task_fenced", **common)
        elif finished.status == SUCCESS:
            self.events.emit("task_succeeded", status="success", **common)
        elif finished.status == RETRY:
            self.events.emit("task_retried", status="queued", error=finished.error, delay=finished.delay, **common)
        else:
            self.events.emit("task_failed", status="failed", error=finished.error, **common)

    def on_dropped(self, worker: Worker, entry: Entry, reason: str, error: str | None) -> None:
        work = entry.work
        task_id = work.task_id if isinstance(work, (TaskWork, Rejected)) else None
        name = work.message.task if isinstance(work, TaskWork) else work.task if isinstance(work, Rejected) else None
        event = {REJECTED: "task_rejected", QUARANTINED: "task_quarantined", FOREIGN: "task_foreign",
                 FENCED: "task_fenced"}.get(reason, "task_skipped")
        self.events.emit(event, task_id=task_id, task=name, worker=worker.name, partition=entry.partition,
                         offset=entry.offset, error=error, reason=reason,
                         status="failed" if reason in (REJECTED, QUARANTINED) else None)


class DeadLetters(Middleware):
    """Failed tasks and records that cannot run go to the dead-letter topic and `yadtq dlq`."""

    def after_complete(self, worker: Worker, finished: Finished, stored: bool) -> None:
        if stored and finished.status == FAILED:
            worker.dead_letter(finished.job.entry, finished.error)

    def on_dropped(self, worker: Worker, entry: Entry, reason: str, error: str | None) -> None:
        if reason in (REJECTED, QUARANTINED, FOREIGN):
            worker.dead_letter(entry, error or reason)

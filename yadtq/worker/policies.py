"""The worker's built-in policies, as middleware: which errors are worth a retry (`RetryRules`,
its own module), retries, events, dead letters, time limits, publishing parked retries, and
the scheduler of periodic tasks (`Schedules`, its own module).
Each sees only the `WorkerContext` (see docs/extending.md)."""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
from typing import Any

from yadtq.store.dead_letters import complete, entry_fields
from yadtq.store.workflows import is_workflow_id
from yadtq.task.queues import parse_queues
from yadtq.task.registry import Registry
from yadtq.task.status import Status
from yadtq.worker.context import WorkerContext
from yadtq.worker.delayed import DueTasks
from yadtq.worker.jobs import CANCELLED, ERROR, FAILED, RETRY, SUCCESS, Finished, Job
from yadtq.worker.middleware import FENCED, FOREIGN, QUARANTINED, REJECTED, Middleware
from yadtq.worker.records import Rejected, TaskWork
from yadtq.worker.retention import RetentionSweep
from yadtq.worker.retry_rules import RetryRules
from yadtq.worker.scheduling import Schedules
from yadtq.worker.tracing import tracing_policies
from yadtq.worker.tracker import Entry

log = logging.getLogger(__name__)

# A task that ignored its time limit past the grace period ends its worker with this code.
EXIT_HARD_TIME_LIMIT = 71


class Retries(Middleware):
    """Judges a raised error: retry (within the task's tries, after a backoff with jitter) or failed.

    A retry of a task without an ordering key is parked in Redis and published
    again when due (`ParkedRetries`), so its partition moves on; one with a key
    waits in place, holding only its key.
    """

    def after_run(self, ctx: WorkerContext, finished: Finished) -> Finished:
        if finished.status != ERROR:
            return finished
        job = finished.job
        tries = job.task.tries or job.run.tries or ctx.settings.tries
        if not finished.retryable or job.run.failures + 1 >= tries:
            return finished.but(status=FAILED)
        return finished.but(status=RETRY, delay=self.delay(ctx, job, finished.requested_delay))

    @staticmethod
    def delay(ctx: WorkerContext, job: Job, requested: float | None) -> float:
        if requested is not None:
            return requested
        s = ctx.settings
        base: float = min(s.retry_backoff * 2.0 ** job.run.failures, s.retry_backoff_max)
        return round(base * random.uniform(0.8, 1.2), 3)


def _names(entry: Entry) -> tuple[str | None, str | None]:
    """(task id, task name) of a record, where it carries them."""
    work = entry.work
    task_id = work.task_id if isinstance(work, (TaskWork, Rejected)) else None
    name = work.message.task if isinstance(work, TaskWork) else work.task if isinstance(work, Rejected) else None
    return task_id, name


class Events(Middleware):
    """The JSON-lines event stream: the worker's tasks, and the notices of the worker itself."""

    def _common(self, ctx: WorkerContext, job: Job) -> dict[str, object]:
        e = job.entry
        return {"task_id": job.task_id, "task": job.task.name, "worker": ctx.name, "partition": e.partition,
                "offset": e.offset, "attempt": job.run.attempt}

    def on_notice(self, ctx: WorkerContext, event: str, fields: dict[str, Any]) -> None:
        ctx.events.emit(event, **(fields if "worker" in fields else {"worker": ctx.name, **fields}))

    def before_run(self, ctx: WorkerContext, job: Job) -> None:
        ctx.events.emit("task_started", **self._common(ctx, job))

    def after_complete(self, ctx: WorkerContext, finished: Finished, stored: bool) -> None:
        common = {**self._common(ctx, finished.job), "duration": finished.duration}
        if not stored:
            ctx.events.emit("task_fenced", **common)
        elif finished.status == SUCCESS:
            ctx.events.emit("task_succeeded", status=Status.SUCCESS, **common)
        elif finished.status == CANCELLED:
            ctx.events.emit("task_cancelled", status=Status.CANCELLED, **common)
        elif finished.status == RETRY:
            ctx.events.emit("task_retried", status=Status.QUEUED, error=finished.error, delay=finished.delay, **common)
        else:
            ctx.events.emit("task_failed", status=Status.FAILED, error=finished.error, **common)

    def on_dropped(self, ctx: WorkerContext, entry: Entry, reason: str, error: str | None) -> None:
        task_id, name = _names(entry)
        event = {REJECTED: "task_rejected", QUARANTINED: "task_quarantined", FOREIGN: "task_foreign",
                 FENCED: "task_fenced"}.get(reason, "task_skipped")
        ctx.events.emit(event, task_id=task_id, task=name, worker=ctx.name, partition=entry.partition,
                        offset=entry.offset, error=error, reason=reason,
                        status=Status.FAILED if reason in (REJECTED, QUARANTINED) else None)


class DeadLetters(Middleware):
    """Failed tasks and records that cannot run go to the dead-letter topic, and to `yadtq dlq`.

    The Redis entry of a task that failed, was quarantined, or was rejected by its id is written by
    the step that stores the failure, in the same call (yadtq.store.dead_letters): this policy
    publishes those to the topic only. It writes the Redis entry itself only for records that fail
    no task (foreign to their id, or with no id): nothing in Redis changed for them, so a crash
    before this write redelivers the record, and it is dead-lettered then.
    """

    def after_complete(self, ctx: WorkerContext, finished: Finished, stored: bool) -> None:
        if stored and finished.status == FAILED:
            self.write(ctx, finished.job.entry, finished.error, in_redis=False)

    def on_dropped(self, ctx: WorkerContext, entry: Entry, reason: str, error: str | None) -> None:
        if reason in (REJECTED, QUARANTINED, FOREIGN):
            task_id, _ = _names(entry)
            stored_by_step = reason == QUARANTINED or (reason == REJECTED and task_id is not None)
            self.write(ctx, entry, error or reason, in_redis=not stored_by_step)

    @staticmethod
    def write(ctx: WorkerContext, entry: Entry, error: str, *, in_redis: bool = True) -> None:
        """Publishes the raw record on its queue's dead-letter topic, truncated to the message limit with
        its original size in a header; `in_redis`: keeps it in Redis too (for `yadtq dlq`)."""
        task_id, name = _names(entry)
        raw = entry.record.value or b""
        s = ctx.settings
        if in_redis:
            ctx.store.add_dead_letter(complete(entry_fields(s, task_id, name, entry.partition, entry.offset, raw),
                                               error))
        # Dead letters stay with their queue: its own list in Redis and its own dead-letter topic.
        queue = parse_queues(s.queues).queue_of(entry.partition)
        headers = [("error", error[:1000].encode()), ("size", str(len(raw)).encode())]
        try:
            ctx.publisher.publish(s.dlq_topic_for(queue), task_id.encode() if task_id else None,
                                  raw[:s.max_message_bytes], headers)
        except Exception as exc:
            log.warning("dead letter for partition %d offset %d not published: %s", entry.partition, entry.offset, exc)


class TimeLimits(Middleware):
    """The executor interrupts a task at its time limit; this policy deals with the tasks it cannot.

    A task that ignores the interrupt past `time_limit_grace` (blocked in C code, or an event
    loop it blocks) ends its worker's process: the farm respawns the worker and the run counts
    as cut off, so a task that always hangs ends in quarantine. A task with no time limit is
    reported once it has run `warn_running_after` seconds.
    """

    def __init__(self) -> None:
        self._hard_limit_hit = threading.Event()

    def on_long_running(self, ctx: WorkerContext, job: Job, elapsed: float) -> None:
        log.warning("task %s (%s) has run %.0fs with no time limit", job.task_id, job.task.name, elapsed)
        ctx.events.emit("task_running_long", worker=ctx.name, task_id=job.task_id, task=job.task.name,
                        seconds=round(elapsed, 1))

    def on_hard_limit(self, ctx: WorkerContext, job: Job) -> None:
        if self._hard_limit_hit.is_set():
            return
        self._hard_limit_hit.set()
        ignored = "its cancel" if job.cancelled else f"its time limit of {job.time_limit:g}s"
        msg = (f"task {job.task_id} ({job.task.name}) ignored {ignored} for "
               f"{ctx.settings.time_limit_grace:g}s more; ending worker {ctx.name}")
        log.error(msg)
        ctx.events.emit("worker_hard_limit", worker=ctx.name, task_id=job.task_id, task=job.task.name,
                        time_limit=job.time_limit, reason="cancelled" if job.cancelled else "time limit")
        ctx.events.flush()
        print(msg, file=sys.stderr, flush=True)
        os._exit(EXIT_HARD_TIME_LIMIT)


class ParkedRetries(Middleware):
    """Publishes the parked retries that are due back to the tasks topic (a standby worker never does),
    and the workflow steps recorded there by the step that stored their predecessor's outcome.

    Taking re-arms them in Redis; they are confirmed (`untake`) only once the broker has them,
    so a retry lost with a worker or a broker outage is published again later."""

    EVERY = 0.1  # seconds between looks (a task parked for its booked start is due half a second before it)

    def __init__(self) -> None:
        self._last = 0.0

    def after_complete(self, ctx: WorkerContext, finished: Finished, stored: bool) -> None:
        # A workflow member's outcome may have put its next step in this same set, due now
        # (yadtq/store/lua/lib/workflow.lua): look at once, so a chain step waits a loop turn.
        if stored and is_workflow_id(finished.job.task_id):
            self._last = 0.0

    def on_tick(self, ctx: WorkerContext) -> None:
        if not ctx.store.available or ctx.standby:
            return
        now = time.monotonic()
        if now - self._last < self.EVERY:
            return
        self._last = now
        taken = ctx.store.take_due_retries()
        if not taken:
            return
        try:
            for due in taken:
                m = due.message
                ctx.publisher.publish(ctx.settings.topic_for(m.queue), m.record_key, m.encode())
        except Exception as exc:  # they stay parked, re-armed: published again later
            log.warning("parked retries not published yet: %s", exc)
            return
        if ctx.publisher.flush():
            ctx.store.untake_retries(taken)
            ctx.events.emit("tasks_republished", worker=ctx.name, count=len(taken), reason="retry due")


def builtin_policies(registry: Registry | None = None) -> list[Middleware]:
    """The policies every worker runs, in this order, before any middleware given to it (the retention
    sweep with the tasks' own `result_ttl` of `registry`)."""
    return [RetryRules(), Retries(), Events(), DeadLetters(), TimeLimits(), ParkedRetries(), Schedules(), DueTasks(),
            RetentionSweep.of(registry or Registry()), *tracing_policies()]

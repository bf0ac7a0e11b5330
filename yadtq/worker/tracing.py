"""Tracing as a policy: each run of a task is a span, a child of its submitter's span.

With opentelemetry installed (`pip install 'yadtq[otel]'`), the `Tracing` middleware reads the
trace context the client put in the record's headers (yadtq.task.trace_context) and makes:

- `yadtq.queued`: from the message's submit time to the run's start (the queue wait), and
- `yadtq.run` (CONSUMER): the attempt, current while the task runs, so spans the task makes
  are its children; a retry is an event `yadtq.retry` on it, a failure sets its status ERROR.

A record without trace headers starts a trace of its own. Without opentelemetry the policy is
not installed at all (`tracing_policies()` is empty): the worker runs exactly as before.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from yadtq.task import trace_context
from yadtq.worker.context import WorkerContext
from yadtq.worker.jobs import FAILED, RETRY, SUCCESS, Finished, Job
from yadtq.worker.middleware import Middleware

RETRIES_REMEMBERED = 10_000


def tracing_policies() -> list[Middleware]:
    """[Tracing()] when opentelemetry is importable, else nothing."""
    return [Tracing()] if trace_context.enabled() else []


class Tracing(Middleware):
    def __init__(self, recording: Callable[[], bool] = trace_context.recording) -> None:
        self._recording = recording  # whether a tracer provider is set (asked at each run: one may come later)
        # task id -> (span, token of the attached context); a task runs once at a time per worker.
        self._open: dict[str, tuple[Any, Any]] = {}
        # task id -> trace headers of a run that ended in a retry: the retry comes back as a record
        # republished from Redis, without headers, and its run joins the same trace when this worker
        # runs it (bounded; a retry that another worker runs starts a trace of its own).
        self._retried: OrderedDict[str, tuple[tuple[str, bytes], ...]] = OrderedDict()
        self._lock = threading.Lock()

    def before_run(self, ctx: WorkerContext, job: Job) -> None:
        headers = job.entry.record.headers
        with self._lock:
            remembered = self._retried.pop(job.task_id, ())
        carried = headers or remembered
        if not trace_context.carries_context(carried) and not self._recording():
            # No parent and no provider: every span would be the invalid one, which is the current span
            # already, so opening none changes nothing a task can see. (With a parent and no provider, the
            # run's current span is that parent's: a task can still read its trace id.)
            return
        from opentelemetry import context, trace

        tracer = trace_context.tracer()
        parent = trace_context.context_of(carried)
        now_ns = time.time_ns()
        attributes = {"yadtq.task_id": job.task_id, "yadtq.task": job.task.name, "yadtq.attempt": job.run.attempt,
                      "yadtq.worker": ctx.name, "messaging.system": "kafka",
                      "messaging.kafka.partition": job.entry.partition, "messaging.kafka.offset": job.entry.offset}
        submitted = getattr(job.entry.work, "message", None)
        submitted_at = getattr(submitted, "submitted_at", None)
        if submitted_at is not None and job.run.attempt == 1:
            start_ns = min(int(submitted_at * 1e9), now_ns)
            attributes["yadtq.queue_wait"] = (now_ns - start_ns) / 1e9
            tracer.start_span("yadtq.queued", context=parent, start_time=start_ns,
                              attributes={"yadtq.task_id": job.task_id}).end(end_time=now_ns)
        span = tracer.start_span("yadtq.run", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes,
                                 start_time=now_ns)
        token = context.attach(trace.set_span_in_context(span))
        with self._lock:
            self._open[job.task_id] = (span, token)

    def after_run(self, ctx: WorkerContext, finished: Finished) -> Finished:
        from opentelemetry import context, trace

        with self._lock:
            opened = self._open.pop(finished.job.task_id, None)
        if opened is None:  # never started here (its claim lapsed first)
            return finished
        span, token = opened
        span.set_attribute("yadtq.outcome", finished.status)
        if finished.status == RETRY:
            span.add_event("yadtq.retry", {"error": finished.error[:1000], "delay": finished.delay})
            carried = finished.job.entry.record.headers or trace_context.headers_of(span)
            with self._lock:
                self._retried[finished.job.task_id] = tuple(carried)
                while len(self._retried) > RETRIES_REMEMBERED:
                    self._retried.popitem(last=False)
        if finished.status not in (SUCCESS, RETRY):
            span.set_status(trace.Status(trace.StatusCode.ERROR, finished.error[:1000]))
        if finished.status == FAILED:
            span.add_event("yadtq.failed", {"error": finished.error[:1000]})
        span.end()
        context.detach(token)  # before_run attached it on this thread (or in this asyncio task)
        return finished

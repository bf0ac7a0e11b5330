"""OpenTelemetry context in a task message's Kafka headers (optional: `pip install 'yadtq[otel]'`).

The submitter's context travels as W3C trace-context headers (`traceparent`, `tracestate`) of the
task's Kafka record, beside its JSON value, so the wire format of the value does not change and a
record without headers runs as before. Without opentelemetry installed every function here is a
no-op: `headers()` gives no headers and `submit_span()` is a null context.

Spans (tracer `yadtq`): `yadtq.submit` (client, PRODUCER; `yadtq.workflow` around a workflow's
submit), then on the worker `yadtq.run` (CONSUMER, a child of the submit span through the headers)
with the queue wait as an attribute and a `yadtq.queued` span covering it, retries as events of
the run span (yadtq.worker.tracing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from yadtq.task.messages import Header

try:
    from opentelemetry import propagate, trace
except ImportError:  # the extra is not installed: tracing is off, nothing else changes
    propagate = None  # type: ignore[assignment]
    trace = None  # type: ignore[assignment]

TRACER = "yadtq"
TRACE_HEADERS = ("traceparent", "tracestate")


def enabled() -> bool:
    """True when opentelemetry is importable (the `otel` extra)."""
    return trace is not None


def recording() -> bool:
    """True when a tracer provider is set (an SDK's, or one named by OTEL_PYTHON_TRACER_PROVIDER): without
    one, the API's tracers make no span but the parent's own (or the invalid span, given no parent)."""
    if trace is None:
        return False
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def carries_context(record_headers: Sequence[tuple[str, bytes]]) -> bool:
    """True when the headers hold a trace context (a `traceparent` or `tracestate`)."""
    return any(k in TRACE_HEADERS for k, _ in record_headers)


def tracer() -> Any:
    assert trace is not None
    return trace.get_tracer(TRACER)


def headers() -> list[Header]:
    """The current context as Kafka headers (none without opentelemetry or an active span)."""
    if propagate is None:
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items() if k in TRACE_HEADERS]


def headers_of(span: Any) -> list[Header]:
    """Headers that make `span` the parent (for a run that came without any: its retry joins its trace)."""
    assert propagate is not None and trace is not None
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return [(k, v.encode()) for k, v in carrier.items() if k in TRACE_HEADERS]


def context_of(record_headers: Sequence[tuple[str, bytes]]) -> Any:
    """The context the headers carry (an empty one when they carry none); needs opentelemetry."""
    assert propagate is not None
    carrier = {k: v.decode("latin-1") for k, v in record_headers if k in TRACE_HEADERS and isinstance(v, bytes)}
    return propagate.extract(carrier)


@contextlib.contextmanager
def submit_span(task_ids: Sequence[str], task_names: Sequence[str]) -> Iterator[None]:
    """A `yadtq.submit` span around publishing (current while the headers are made)."""
    if trace is None:
        yield
        return
    attributes = {"messaging.system": "kafka", "yadtq.task_ids": list(task_ids)[:100],
                  "yadtq.tasks": sorted(set(task_names))[:20], "messaging.batch.message_count": len(task_ids)}
    with tracer().start_as_current_span("yadtq.submit", kind=trace.SpanKind.PRODUCER, attributes=attributes):
        yield


@contextlib.contextmanager
def workflow_span(workflow_id: str) -> Iterator[None]:
    """A `yadtq.workflow` span around submitting a workflow: its first steps' headers carry it, so
    their runs (and the steps they lead to) join the submitter's trace under one parent."""
    if trace is None:
        yield
        return
    with tracer().start_as_current_span("yadtq.workflow", kind=trace.SpanKind.PRODUCER,
                                        attributes={"yadtq.workflow_id": workflow_id}):
        yield

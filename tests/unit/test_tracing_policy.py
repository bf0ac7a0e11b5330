"""The tracing policy opens a run's spans only where they can be seen: a tracer provider records them,
or the record carries a parent (whose trace id the task then reads as its current span's)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry import trace
from conftest import ROOT
from test_worker_policies import context, job, task_entry

from yadtq.task.messages import TaskMessage
from yadtq.worker.jobs import SUCCESS, Finished
from yadtq.worker.records import Record, TaskWork
from yadtq.worker.tracing import Tracing
from yadtq.worker.tracker import Entry

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = (("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),)


def _entry(headers: tuple[tuple[str, bytes], ...]) -> Entry:
    m = TaskMessage("t1", "add", (1, 2))
    return Entry(Record(3, 17, b"k", m.encode(), headers), TaskWork(m, "digest"))


@pytest.mark.parametrize(("recording", "headers", "opened"), [
    (False, (), False),          # nothing could see a span: none is opened
    (False, PARENT, True),       # no provider, but the task's current span is its submitter's
    (True, (), True),            # a provider records it
    (True, PARENT, True),
    (False, (("baggage", b"k=v"),), False),  # headers, but no trace context among them
])
def test_a_run_opens_its_spans_only_where_they_can_be_seen(recording: bool, headers: tuple[tuple[str, bytes], ...],
                                                          opened: bool) -> None:
    ctx, _ = context()
    policy = Tracing(recording=lambda: recording)
    j = job(_entry(headers))
    seen: list[int] = []
    policy.before_run(ctx, j)
    seen.append(trace.get_current_span().get_span_context().trace_id)  # what the task would read
    assert (j.task_id in policy._open) == opened
    finished = Finished(j, SUCCESS)
    assert policy.after_run(ctx, finished) is finished
    assert not policy._open
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached after the run, or never attached
    if headers == PARENT:
        assert seen == [TRACE_ID]
    elif not opened:
        assert seen == [0]


def test_a_retry_without_a_provider_or_parent_carries_no_context_to_its_next_run() -> None:
    ctx, _ = context()
    policy = Tracing(recording=lambda: False)
    j = job(task_entry())
    policy.before_run(ctx, j)
    policy.after_run(ctx, Finished(j, "retry", error="boom", delay=1.0))
    assert not policy._retried and not policy._open


PROBE = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from yadtq.task import trace_context
print(trace_context.recording())
trace.set_tracer_provider(TracerProvider())
print(trace_context.recording())
"""


def test_recording_is_true_once_a_tracer_provider_is_set() -> None:
    # In a process of its own: a provider is set once per process (another test of this run may have set it).
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "True"], out.stderr

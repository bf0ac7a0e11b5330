"""`AsyncYADTQ` and tracing in-process: a real `Worker` on a `MemorySource`, a real Redis.

The async client writes its records through redis.asyncio and hands its messages (with their trace
headers) to the memory source instead of Kafka; `result()` must wake on the outcome's announcement,
and the worker's run span must be a child of the submitter's span, carried by the record's headers.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_for
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from yadtq import AsyncYADTQ
from yadtq.client.edge_check import EdgeCheck
from yadtq.client.workflows import Workflows
from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable, ResultTimeout, TaskFailed, TaskNotFound
from yadtq.ops.ports import free_port
from yadtq.store.backend import Backend, TaskNotCancellable
from yadtq.store.keys import Keys
from yadtq.store.workflows import WorkflowStore
from yadtq.task import trace_context
from yadtq.task.canvas import chain, chord, group, signature
from yadtq.task.messages import Header, TaskMessage
from yadtq.task.outcomes import Retry
from yadtq.task.registry import Registry
from yadtq.worker import MemorySource, Worker, policies, tracing

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process: join the one an earlier test set, if any.
    current = trace.get_tracer_provider()
    provider = current if isinstance(current, TracerProvider) else TracerProvider()
    processor = SimpleSpanProcessor(EXPORTER)
    provider.add_span_processor(processor)
    if provider is not current:
        trace.set_tracer_provider(provider)
    yield EXPORTER
    processor.shutdown()  # later tests in this process export nothing here (no spans pile up)
    EXPORTER.clear()


class MemoryPublisher:
    """AsyncPublisher's `send`/`close` onto the in-memory task source (`drop`: as if Kafka were down;
    `hold`: acked but not delivered yet, so the task stays queued)."""

    def __init__(self, source: MemorySource) -> None:
        self.source = source
        self.drop = False
        self.hold = False

    async def send(self, messages: Sequence[TaskMessage], headers: Sequence[Header] = ()) -> None:
        if self.drop:
            raise BrokerUnavailable("memory", "dropped")
        for m in messages if not self.hold else ():
            self.source.append(m.encode(), (m.key or m.task_id).encode(), 0, headers)

    async def close(self) -> None:
        pass


class Farm:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gate = threading.Event()
        self.flaky_runs = 0
        reg = Registry()

        @reg.task("add")
        def add(x: int, y: int) -> int:
            return x + y

        @reg.task("total")
        def total(values: list[float]) -> float:
            return float(sum(values))

        @reg.task("hold")
        def hold() -> str:
            self.gate.wait(20)
            return "released"

        @reg.task("flaky")
        def flaky() -> str:
            self.flaky_runs += 1
            if self.flaky_runs == 1:
                raise Retry("first try fails", delay=0.05)
            with trace.get_tracer("test").start_as_current_span("inside-the-task"):
                return "ok"

        self.source = MemorySource(1)
        self.source.assign([0])
        self.worker = Worker(settings, reg, "W1", source=self.source)
        self.worker.connect()
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()
        self.publisher = MemoryPublisher(self.source)

    def client(self, **overrides: Any) -> AsyncYADTQ:
        return AsyncYADTQ(self.settings.replace(**overrides), publisher=self.publisher)

    def stop(self) -> None:
        self.gate.set()
        self.worker.stop()
        self.thread.join(timeout=15)


@pytest.fixture
def farm(redis_url: str, tmp_path: Path) -> Iterator[Farm]:
    f = Farm(Settings(redis_url=redis_url, prefix=f"u{uuid.uuid4().hex[:8]}:", partitions=1, log_dir=str(tmp_path),
                      concurrency=2, lease=2.0, tries=2, retry_backoff=0.05))
    yield f
    f.stop()


def test_async_client_submits_tracks_and_wakes_on_the_announcement(farm: Farm) -> None:
    async def scenario() -> None:
        async with farm.client(result_poll=10.0) as q:  # a poll of 10 s: only the announcement wakes it in time
            held = await q.submit("hold")
            both = await q.submit_many([("add", [1, 2]), {"task": "add", "args": [3, 4], "task-id": "fixed-id"}])
            assert both[1] == "fixed-id"
            assert [await q.result(t, timeout=10) for t in both] == [3, 7]
            await asyncio.wait_for(_until_processing(q, held), 10)
            with pytest.raises(ResultTimeout):
                await q.result(held, timeout=0.1)
            waiter = asyncio.create_task(q.result(held, timeout=30))
            first = asyncio.Event()
            seen = asyncio.create_task(_statuses(q, held, first))
            await asyncio.wait_for(first.wait(), 10)  # the follower read `processing` and listens
            await asyncio.sleep(0.2)
            assert not waiter.done()
            released = time.monotonic()
            farm.gate.set()
            assert await waiter == "released"
            assert time.monotonic() - released < 2.0, "woken by the announcement, well before the 10 s poll"
            assert await asyncio.wait_for(seen, 5) == ["processing", "success"]
            # A publish that fails leaves no record behind; a queued task can be cancelled.
            farm.publisher.drop = True
            with pytest.raises(BrokerUnavailable):
                await q.submit("add", [1, 1], task_id="undone")
            with pytest.raises(TaskNotFound):
                await q.status("undone")
            farm.publisher.drop, farm.publisher.hold = False, True
            queued = await q.submit("add", [2, 2])
            assert (await q.cancel(queued)).status == "cancelled"
            with pytest.raises(TaskNotCancellable):
                await q.cancel(both[0])
            farm.publisher.hold = False
            delayed = await q.submit("add", [5, 5], countdown=600)  # waits in Redis: never published yet
            assert (await q.status(delayed)).status == "scheduled"
            assert (await q.cancel(delayed)).status == "cancelled"
    asyncio.run(scenario())


async def _statuses(q: AsyncYADTQ, task_id: str, first: asyncio.Event) -> list[str]:
    out = []
    async for rec in q.follow(task_id, timeout=30):
        out.append(rec.status)
        first.set()
    return out


async def _until_processing(q: AsyncYADTQ, task_id: str) -> None:
    while (await q.status(task_id)).status != "processing":
        await asyncio.sleep(0.02)


def test_the_run_span_is_a_child_of_the_submit_span_across_the_headers(farm: Farm) -> None:
    EXPORTER.clear()

    async def scenario() -> str:
        async with farm.client() as q:
            with trace.get_tracer("test").start_as_current_span("request"):
                tid = await q.submit("flaky")
            assert await q.result(tid, timeout=10) == "ok"
            return tid
    tid = asyncio.run(scenario())
    wait_for(lambda: len([s for s in EXPORTER.get_finished_spans() if s.name == "yadtq.run"]) == 2, 10, 0.02,
             "both runs' spans")
    by_name: dict[str, list[Any]] = {}
    for s in EXPORTER.get_finished_spans():
        by_name.setdefault(s.name, []).append(s)
    (request,), (submit,), (queued,) = by_name["request"], by_name["yadtq.submit"], by_name["yadtq.queued"]
    runs = sorted(by_name["yadtq.run"], key=lambda s: s.attributes["yadtq.attempt"])
    assert submit.parent.span_id == request.context.span_id
    assert queued.parent.span_id == submit.context.span_id
    assert {r.parent.span_id for r in runs} == {submit.context.span_id}
    assert {s.context.trace_id for s in (submit, queued, *runs)} == {request.context.trace_id}
    assert [r.attributes["yadtq.outcome"] for r in runs] == ["retry", "success"]
    assert [e.name for e in runs[0].events] == ["yadtq.retry"] and not runs[1].events
    assert runs[0].attributes["yadtq.task_id"] == tid
    (inside,) = by_name["inside-the-task"]
    assert inside.parent.span_id == runs[1].context.span_id, "the run span is current while the task runs"
    # A record without headers (the seed's wire format, any Kafka client) runs as before, in a trace of its own.
    plain = TaskMessage(uuid.uuid4().hex, "add", (1, 2), {}, 1, time.time())
    client = redis.Redis.from_url(farm.settings.redis_url, decode_responses=True)
    Backend(client, farm.settings).record_queued([plain], 1)
    client.close()
    farm.source.append(plain.encode(), plain.task_id.encode(), 0)
    (run,) = wait_for(lambda: [s for s in EXPORTER.get_finished_spans() if s.name == "yadtq.run"
                               and s.attributes["yadtq.task_id"] == plain.task_id], 10, 0.02, "the plain run's span")
    assert run.parent is None and run.attributes["yadtq.outcome"] == "success"


def test_async_client_runs_a_chain_a_group_and_a_chord_under_a_workflow_span(farm: Farm) -> None:
    EXPORTER.clear()

    async def scenario() -> list[str]:
        async with farm.client(result_poll=10.0) as q:  # only the workflows' announcements wake result() in time
            def add(*args: int) -> Any:
                return q.signature("add", args)
            with trace.get_tracer("test").start_as_current_span("request"):
                wids = [await q.submit_workflow(chain(add(1, 2), add(10), add(100))),
                        await q.submit_workflow(group(add(1, 1), add(2, 2))),
                        await q.submit_workflow(chord(group(add(1, 1), add(2, 2)), q.signature("total")).to_dict())]
            started = time.monotonic()
            got = await asyncio.gather(*(q.result(w, timeout=8) for w in wids))
            assert got == [113, [2, 4], 6.0]
            assert time.monotonic() - started < 5, "woken by the announcements, well before the 10 s poll"
            state = await q.workflow(wids[2])
            assert state.status == "success" and [n.state for n in state.nodes] == ["success"] * 5
            failing = await q.submit_workflow(chain(add(1, 1), q.signature("add", [1], {"y": 2})))
            with pytest.raises(TaskFailed, match="add"):
                await q.result(failing, timeout=8)
            linked = await q.submit("add", [1, 2], link=add(10))
            assert await q.result(linked, timeout=8) == 3
            with pytest.raises(TaskNotFound):
                await q.workflow("wf-unknown")
            with pytest.raises(TaskNotFound):
                await q.result("wf-unknown", timeout=1)
            return wids
    wids = asyncio.run(scenario())
    wait_for(lambda: len([s for s in EXPORTER.get_finished_spans() if s.name == "yadtq.run"]) >= 9, 10, 0.02,
             "the runs' spans")
    spans = EXPORTER.get_finished_spans()
    (request,) = [s for s in spans if s.name == "request"]
    flows = {s.attributes["yadtq.workflow_id"]: s for s in spans if s.name == "yadtq.workflow"}
    assert set(wids) <= set(flows) and {flows[w].parent.span_id for w in wids} == {request.context.span_id}
    first = [s for s in spans if s.name == "yadtq.run" and s.attributes["yadtq.task_id"] == f"{wids[0]}.1"]
    assert len(first) == 1 and first[0].parent.span_id == flows[wids[0]].context.span_id
    assert first[0].context.trace_id == request.context.trace_id

def test_the_blocking_client_sends_a_workflows_first_steps_under_its_workflow_span(farm: Farm) -> None:
    client = redis.Redis.from_url(farm.settings.redis_url, decode_responses=True)
    sent: list[list[Header]] = []
    flow = Workflows(WorkflowStore(client, farm.settings), EdgeCheck(client, Keys(farm.settings.prefix)),
                     lambda ms: sent.append(trace_context.headers()), 1)
    wid = flow.submit(group(signature("add", [1, 2]), signature("add", [3, 4])), unchecked=True)
    client.close()
    (span,) = [s for s in EXPORTER.get_finished_spans() if s.attributes.get("yadtq.workflow_id") == wid]
    assert span.name == "yadtq.workflow" and len(sent) == 1
    assert dict(sent[0])["traceparent"].decode().split("-")[2] == f"{span.context.span_id:016x}"

def test_a_broker_that_is_not_there_fails_the_submit_and_leaves_no_record(redis_url: str, tmp_path: Path) -> None:
    settings = Settings(redis_url=redis_url, prefix=f"u{uuid.uuid4().hex[:8]}:",
                        kafka_bootstrap=f"127.0.0.1:{free_port()}", connect_timeout=0.5, log_dir=str(tmp_path))

    async def scenario() -> None:
        async with AsyncYADTQ(settings) as q:  # Kafka's own publisher, nobody listening on its port
            with pytest.raises(BrokerUnavailable):
                await q.submit("add", [1, 2], task_id="never", unchecked=True)
            with pytest.raises(TaskNotFound):
                await q.status("never")
    asyncio.run(scenario())


def test_without_opentelemetry_nothing_is_traced_and_no_policy_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith("opentelemetry.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` now fails
    try:
        off = importlib.reload(trace_context)
        assert not off.enabled() and off.headers() == []
        with off.submit_span(["t"], ["add"]):
            pass
        assert tracing.tracing_policies() == []
        assert not any(isinstance(p, tracing.Tracing) for p in policies.builtin_policies())
    finally:
        monkeypatch.undo()
        importlib.reload(trace_context)
    assert trace_context.enabled() and any(isinstance(p, tracing.Tracing) for p in policies.builtin_policies())

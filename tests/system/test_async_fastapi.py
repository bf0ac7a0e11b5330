"""`AsyncYADTQ` from a FastAPI handler on real processes and both brokers: requests served at once
on one event loop submit through Kafka, a worker process runs the tasks, and each handler's
`await q.result(...)` returns the outcome. A submit made inside a span carries its trace context
through the broker in the record's headers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from conftest import Procs, wait_for
from fastapi import FastAPI, Request
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from yadtq import YADTQ, AsyncYADTQ
from yadtq.broker.clients import make_consumer
from yadtq.config import Settings


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/sum")
    async def add(a: int, b: int, request: Request) -> dict[str, Any]:
        q: AsyncYADTQ = request.app.state.q
        task_id = await q.submit("add", [a, b])
        return {"id": task_id, "result": await q.result(task_id, timeout=60)}

    return app


def test_a_fastapi_handler_submits_and_awaits_the_result(settings: Settings, procs: Procs) -> None:
    procs.worker("W1")
    app = make_app()
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())  # a real provider, so spans have ids to carry

    async def scenario() -> tuple[list[dict[str, Any]], str, int, str]:
        async with AsyncYADTQ(settings) as q:
            app.state.q = q
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
                replies = await asyncio.gather(*(http.post("/sum", params={"a": i, "b": 100}, timeout=90)
                                                 for i in range(6)))
            assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
            began = time.monotonic()
            assert (await q.status(replies[0].json()["id"])).status == "success"
            assert time.monotonic() - began < 1.0
            with trace.get_tracer("test").start_as_current_span("request") as span:
                traced = await q.submit("add", [1, 1])
            assert await q.result(traced, timeout=60) == 2
            routed = await q.submit("add", [3, 4], queue="mixq", result_ttl=60)  # no worker serves it: stays
            assert (await q.status(routed)).as_dict()["queue"] == "mixq"
            return [r.json() for r in replies], traced, span.get_span_context().trace_id, routed
    bodies, traced, trace_id, routed = asyncio.run(scenario())
    with YADTQ(settings) as q, trace.get_tracer("test").start_as_current_span("sync-request") as sync_span:
        traced_sync = q.submit("add", [2, 2])  # the blocking client carries the context the same way
    assert [b["result"] for b in bodies] == [100 + i for i in range(6)]
    assert len({b["id"] for b in bodies}) == 6
    # The traced submit's record carries the span's context through the broker (W3C traceparent).
    consumer = make_consumer(settings, None, consumer_timeout_ms=1000)
    try:
        consumer.subscribe([settings.topic, settings.topic_for("mixq")])
        found: dict[bytes, dict[str, bytes]] = {}
        topics: dict[bytes, str] = {}

        def read() -> bool:
            for batch in consumer.poll(timeout_ms=500).values():
                found.update({rec.key: dict(rec.headers or ()) for rec in batch})
                topics.update({rec.key: rec.topic for rec in batch})
            return all(t.encode() in found for t in (traced, traced_sync, routed))
        wait_for(read, 30, 0, "the traced record")
    finally:
        consumer.close()
    assert found[traced.encode()]["traceparent"].decode().split("-")[1] == f"{trace_id:032x}"
    assert topics[routed.encode()] == settings.topic_for("mixq")  # a named queue's own topic
    assert topics[traced.encode()] == settings.topic
    sync_trace = found[traced_sync.encode()]["traceparent"].decode().split("-")[1]
    assert sync_trace == f"{sync_span.get_span_context().trace_id:032x}"
    # A submit outside any span starts a trace of its own (its submit span is the root).
    assert found[bodies[0]["id"].encode()]["traceparent"].decode().split("-")[1] != f"{trace_id:032x}"

"""`GET /tasks/{id}/events`: a task's changes as server-sent events, until it ends; and the
long-poll of `GET /tasks/{id}/result`, woken the same way.

    event: task
    data: {"task_id": "...", "status": "processing", "progress": 0.4, "progress_message": "resizing", ...}

One `task` event with the record now, then one at each announced change (status or
progress: yadtq.store.announcements), the last one with `"done": true`; then the stream
ends. A stream still open after `timeout` seconds ends with a `timeout` event (an
EventSource connects again by itself). A browser's `EventSource` reads it as is.

Following blocks on a Redis subscription between changes, so each stream's waits run in
a pool of their own (`STREAMS` threads): open streams never take the threads the API's
other endpoints run on. A stream whose client left is closed (its subscription dropped)
once its current wait returns, within `result_poll` seconds.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Generator
from concurrent.futures import ThreadPoolExecutor

from fastapi.responses import StreamingResponse

from yadtq.api.models import TaskOut
from yadtq.client.changes import wait_done
from yadtq.client.client import YADTQ
from yadtq.errors import ResultTimeout
from yadtq.store.backend import TaskRecord

MAX_STREAM = 3600.0
STREAMS = 64  # streams waiting at once; more wait for a thread
_pool = ThreadPoolExecutor(STREAMS, thread_name_prefix="yadtq-sse")


def sse(event: str, data: str) -> str:
    """One server-sent event (data on one line: JSON has no raw newlines)."""
    return f"event: {event}\ndata: {data}\n\n"


def _events(q: YADTQ, task_id: str, timeout: float) -> Generator[str, None, None]:
    try:
        for rec in q.follow(task_id, timeout):
            yield sse("task", TaskOut.of(rec).model_dump_json())
    except ResultTimeout:
        yield sse("timeout", json.dumps({"task_id": task_id, "timeout": timeout}))


class _Stepper:
    """Steps a blocking iterator on the pool; `close` waits for a step under way, then closes it."""

    def __init__(self, it: Generator[str, None, None]) -> None:
        self.it = it
        self.lock = threading.Lock()

    def step(self) -> str | None:
        with self.lock:
            return next(self.it, None)

    def close(self) -> None:
        with self.lock:
            self.it.close()


async def wait_record(q: YADTQ, task_id: str, wait: float) -> TaskRecord:
    """The record once final, or as it is after `wait` seconds (the long-poll of /result), on the
    streams' pool; raises `TaskNotFound`."""
    def final_or_now() -> TaskRecord:
        try:
            # a task's record only (`q.wait` would wait for a workflow of that id too)
            return wait_done(q.backend, q.announcements, task_id, wait, q.settings.result_poll)
        except ResultTimeout:
            return q.status(task_id)
    return await asyncio.get_running_loop().run_in_executor(_pool, final_or_now)


def task_events(q: YADTQ, task_id: str, timeout: float) -> StreamingResponse:
    """The stream; raises `TaskNotFound` (a 404) before it starts for an unknown id."""
    q.status(task_id)
    stepper = _Stepper(_events(q, task_id, timeout))

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        try:
            while (chunk := await loop.run_in_executor(_pool, stepper.step)) is not None:
                yield chunk
        finally:
            _pool.submit(stepper.close)  # after the step under way, if the client left mid-wait
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

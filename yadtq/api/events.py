"""`GET /tasks/{id}/events`: a task's changes as server-sent events, until it ends.

    event: task
    data: {"task_id": "...", "status": "processing", "progress": 0.4, "progress_message": "resizing", ...}

One `task` event with the record now, then one at each announced change (status or
progress: yadtq.store.announcements), the last one with `"done": true`; then the stream
ends. A stream still open after `timeout` seconds ends with a `timeout` event (an
EventSource connects again by itself). A browser's `EventSource` reads it as is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi.responses import StreamingResponse

from yadtq.api.models import TaskOut
from yadtq.client.client import YADTQ
from yadtq.errors import ResultTimeout

MAX_STREAM = 3600.0


def sse(event: str, data: str) -> str:
    """One server-sent event (data on one line: JSON has no raw newlines)."""
    return f"event: {event}\ndata: {data}\n\n"


def task_events(q: YADTQ, task_id: str, timeout: float) -> StreamingResponse:
    """The stream; raises `TaskNotFound` (a 404) before it starts for an unknown id."""
    q.status(task_id)

    # A plain generator: Starlette runs it in its thread pool, where the subscription's wait blocks.
    def stream() -> Iterator[str]:
        try:
            for rec in q.follow(task_id, timeout):
                yield sse("task", TaskOut.of(rec).model_dump_json())
        except ResultTimeout:
            yield sse("timeout", json.dumps({"task_id": task_id, "timeout": timeout}))
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

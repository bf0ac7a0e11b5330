"""What a task's `current_task().progress(fraction, message)` checks before the worker stores it.

    @task
    def resize(paths: list) -> int:
        for i, path in enumerate(paths):
            ...
            current_task().progress((i + 1) / len(paths), f"resized {path}")
        return len(paths)

The call never blocks on Redis and costs little in a tight loop: the worker keeps the
latest value and stores a few per second (yadtq.worker.progress). Outside a worker
(no reporter) it only checks its arguments.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
# Receives (fraction, message) of the running task; the worker's is non-blocking.
ProgressSink = Callable[[float, str | None], None]


def report_progress(sink: ProgressSink | None, fraction: float, message: str | None) -> None:
    """Raises ValueError for a fraction outside 0..1 (or not a number), TypeError for a message
    that is not a string; hands the report to `sink` when there is one."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or math.isnan(fraction) \
            or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress must be a fraction between 0 and 1, got {fraction!r}")
    if message is not None and not isinstance(message, str):
        raise TypeError(f"progress message must be a string, got {type(message).__name__}")
    if sink is not None:
        sink(float(fraction), message)


async def in_context(var: contextvars.ContextVar[T], value: T, coro: Coroutine[Any, Any, Any]) -> Any:
    """Awaits `coro` with `var` set to `value`: an `async def` task's body runs when awaited, after
    the caller that built it has returned, so the variable must be set around the await."""
    token = var.set(value)
    try:
        return await coro
    finally:
        var.reset(token)

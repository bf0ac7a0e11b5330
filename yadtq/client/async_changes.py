"""Following a task's record from asyncio: `yadtq.client.changes` on the asyncio store.

Subscribed before the first read (no lost wake-up), woken by the record's announcements,
re-reading at least every `poll` seconds (pub/sub is lost across a Redis restart), riding out a
Redis outage while reading for up to `RIDE_OUT` seconds and never past the timeout.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from yadtq.client.changes import RIDE_OUT
from yadtq.errors import ResultTimeout
from yadtq.store.announcements import pushed_record
from yadtq.store.async_announcements import AsyncAnnouncements
from yadtq.store.async_backend import AsyncBackend
from yadtq.store.backend import TaskRecord
from yadtq.store.connection import REDIS_UNAVAILABLE


async def async_follow(backend: AsyncBackend, announcements: AsyncAnnouncements, task_id: str,
                       timeout: float | None = None, poll: float = 1.0,
                       progress: bool = True) -> AsyncIterator[TaskRecord]:
    """The record now, then each changed version (`progress` False: status changes only), ending with
    the final one. Raises `TaskNotFound`, `ResultTimeout` when not final within `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    down_since: float | None = None
    last: tuple[object, ...] | None = None
    pushed: TaskRecord | None = None  # a final outcome's announcement carries its record
    async with announcements.listen([task_id]) as changes:
        while True:
            try:
                rec: TaskRecord | None = pushed or await backend.get(task_id)
                down_since = None
            except REDIS_UNAVAILABLE:
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since >= RIDE_OUT or (deadline is not None and now >= deadline):
                    raise
                rec = None
            if rec is not None:
                seen = (rec.status, rec.attempts, rec.progress, rec.progress_message) if progress else \
                    (rec.status, rec.attempts)
                if seen != last:
                    last = seen
                    yield rec
                if rec.done:
                    return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ResultTimeout(task_id, timeout or 0, rec.status if rec else "unknown")
            pushed = pushed_record(task_id, await changes.wait(poll if left is None else min(poll, left)))


async def async_wait_done(backend: AsyncBackend, announcements: AsyncAnnouncements, task_id: str,
                          timeout: float | None = None, poll: float = 1.0) -> TaskRecord:
    """The task's final record; raises `ResultTimeout`, `TaskNotFound`."""
    async for rec in async_follow(backend, announcements, task_id, timeout, poll, progress=False):
        if rec.done:
            return rec
    raise AssertionError("follow ends with a final record")  # pragma: no cover

"""Waiting for a task's final record from asyncio: `yadtq.client.changes.wait_done` on the asyncio
store. Subscribed before the first read (no lost wake-up), woken by the record's announcements,
re-reading at least every `poll` seconds (pub/sub is lost across a Redis restart), riding out a
Redis outage while reading for up to `RIDE_OUT` seconds and never past the timeout.
"""

from __future__ import annotations

import time

from yadtq.client.changes import RIDE_OUT
from yadtq.errors import ResultTimeout
from yadtq.store.async_announcements import AsyncAnnouncements
from yadtq.store.async_backend import AsyncBackend
from yadtq.store.backend import TaskRecord
from yadtq.store.connection import REDIS_UNAVAILABLE


async def async_wait_done(backend: AsyncBackend, announcements: AsyncAnnouncements, task_id: str,
                          timeout: float | None = None, poll: float = 1.0) -> TaskRecord:
    """The task's final record; raises `ResultTimeout`, `TaskNotFound`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    down_since: float | None = None
    async with announcements.listen([task_id]) as changes:
        while True:
            try:
                rec: TaskRecord | None = await backend.get(task_id)
                down_since = None
            except REDIS_UNAVAILABLE:
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since >= RIDE_OUT or (deadline is not None and now >= deadline):
                    raise
                rec = None
            if rec is not None and rec.done:
                return rec
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ResultTimeout(task_id, timeout or 0, rec.status if rec else "unknown")
            await changes.wait(poll if left is None else min(poll, left))

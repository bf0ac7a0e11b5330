"""Following a task's record: woken by its announced changes, never by a polling loop alone.

`follow` yields the record each time it changes (announced by the Lua step that
changed it: yadtq.store.announcements), until it reaches a final status; `wait_done`
returns that final record. Both subscribe before their first read (no lost wake-up)
and re-read the record at least every `poll` seconds besides, so they still end while
pub/sub is unavailable (across a Redis restart): there they poll slowly.

A Redis outage while reading is ridden out for up to `RIDE_OUT` seconds (and never
past the caller's timeout); then its error is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from yadtq.errors import ResultTimeout
from yadtq.store.announcements import Announcements, pushed_record
from yadtq.store.backend import Backend, TaskRecord
from yadtq.store.connection import REDIS_UNAVAILABLE

RIDE_OUT = 30.0


def follow(backend: Backend, announcements: Announcements, task_id: str, timeout: float | None = None,
           poll: float = 1.0, progress: bool = True) -> Iterator[TaskRecord]:
    """The record now, then each changed version (`progress` False: status changes only), ending with
    the final one. Raises `TaskNotFound`, `ResultTimeout` when not final within `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: tuple[object, ...] | None = None
    read = _reader(backend, task_id, deadline)
    with announcements.listen([task_id]) as changes:
        rec = read()
        while True:
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
            payload = changes.wait(poll if left is None else min(poll, left))
            rec = pushed_record(task_id, payload) or read()  # a final outcome comes with its record


def wait_done(backend: Backend, announcements: Announcements, task_id: str, timeout: float | None = None,
              poll: float = 1.0) -> TaskRecord:
    """The task's final record; raises `ResultTimeout`, `TaskNotFound`."""
    for rec in follow(backend, announcements, task_id, timeout, poll, progress=False):
        if rec.done:
            return rec
    raise AssertionError("follow ends with a final record")  # pragma: no cover


def _reader(backend: Backend, task_id: str, deadline: float | None) -> Callable[[], TaskRecord | None]:
    """Reads the record; None while Redis is away, for up to RIDE_OUT seconds in a row and never
    past `deadline`, then the error is raised."""
    down_since: float | None = None

    def read() -> TaskRecord | None:
        nonlocal down_since
        try:
            rec = backend.get(task_id)
        except REDIS_UNAVAILABLE:
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since >= RIDE_OUT or (deadline is not None and now >= deadline):
                raise
            return None
        down_since = None
        return rec
    return read

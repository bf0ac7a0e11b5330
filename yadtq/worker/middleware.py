"""Hooks around the worker loop, so policy stays out of it (as in dramatiq).

The loop is "poll, claim, run, complete, commit"; everything else (retries,
events, dead letters, crash injection, metrics) is a middleware overriding some
of these hooks. Hooks are isolated: one that raises is logged and skipped, it
never ends the worker (`Hooks`).

Threads: `before_run` and `after_run` run on the task's executor thread (or the
event loop, for `async def` tasks); every other hook on the loop thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yadtq.worker.jobs import Finished, Job
    from yadtq.worker.loop import Worker
    from yadtq.worker.tracker import Entry

log = logging.getLogger(__name__)

# Why a record was dealt with without running (the `on_dropped` reasons).
SKIPPED, PARKED, REJECTED, QUARANTINED, FOREIGN, FENCED = (
    "skipped", "parked", "rejected", "quarantined", "foreign", "fenced")


class Middleware:
    def before_claim(self, worker: Worker, entry: Entry) -> None:
        """A task record is about to be claimed in Redis."""

    def before_run(self, worker: Worker, job: Job) -> None:
        """The task is claimed and about to run (task thread)."""

    def after_run(self, worker: Worker, finished: Finished) -> Finished:
        """The task returned or raised; returns the outcome to store (task thread)."""
        return finished

    def after_complete(self, worker: Worker, finished: Finished, stored: bool) -> None:
        """The outcome is stored in Redis (`stored` False: fenced, the claim was lost); offset not committed."""

    def on_dropped(self, worker: Worker, entry: Entry, reason: str, error: str | None) -> None:
        """A record was dealt with without running (see the reasons above)."""

    def after_commit(self, worker: Worker, offsets: dict[int, int]) -> None:
        """Offsets were committed to Kafka."""


class Hooks:
    """Calls one hook on every middleware in order; a failing hook is logged, never fatal."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self.middleware = list(middleware)

    def call(self, hook: str, *args: Any) -> None:
        for m in self.middleware:
            try:
                getattr(m, hook)(*args)
            except Exception:
                log.exception("middleware %s.%s failed", type(m).__name__, hook)

    def after_run(self, worker: Worker, finished: Finished) -> Finished:
        for m in self.middleware:
            try:
                finished = m.after_run(worker, finished)
            except Exception:
                log.exception("middleware %s.after_run failed", type(m).__name__)
        return finished

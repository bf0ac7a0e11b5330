"""Hooks around the worker loop, so policy stays out of it (as in dramatiq).

The loop is "poll, claim, run, complete, commit"; everything else (retries,
events, dead letters, time limits, publishing parked retries, crash injection,
metrics) is a middleware overriding some of these hooks. Every hook receives the
`WorkerContext` (what a policy may see and do), never the worker itself. Hooks are
isolated: one that raises is logged and skipped, it never ends the worker (`Hooks`).

Threads: `before_run` and `after_run` run on the task's executor thread (or the
event loop, for `async def` tasks); `on_long_running` and `on_hard_limit` on the
watchdog thread; every other hook on the loop thread. See docs/extending.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from yadtq.worker.context import WorkerContext
from yadtq.worker.jobs import Finished, Job
from yadtq.worker.tracker import Entry

log = logging.getLogger(__name__)

# Why a record was dealt with without running (the `on_dropped` reasons).
SKIPPED, PARKED, REJECTED, QUARANTINED, FOREIGN, FENCED = (
    "skipped", "parked", "rejected", "quarantined", "foreign", "fenced")


class Middleware:
    def before_claim(self, ctx: WorkerContext, entry: Entry) -> None:
        """A task record is about to be claimed in Redis."""

    def before_run(self, ctx: WorkerContext, job: Job) -> None:
        """The task is claimed and about to run (task thread)."""

    def after_run(self, ctx: WorkerContext, finished: Finished) -> Finished:
        """The task returned or raised; returns the outcome to store (task thread)."""
        return finished

    def after_complete(self, ctx: WorkerContext, finished: Finished, stored: bool) -> None:
        """The outcome is stored in Redis (`stored` False: fenced, the claim was lost); offset not committed."""

    def on_dropped(self, ctx: WorkerContext, entry: Entry, reason: str, error: str | None) -> None:
        """A record was dealt with without running (see the reasons above)."""

    def after_commit(self, ctx: WorkerContext, offsets: dict[int, int]) -> None:
        """Offsets were committed to Kafka."""

    def on_tick(self, ctx: WorkerContext) -> None:
        """Once per turn of the loop (many times a second): keep your own timer for periodic work."""

    def on_notice(self, ctx: WorkerContext, event: str, fields: dict[str, Any]) -> None:
        """Something happened to the worker itself (joined, partitions assigned, Redis lost, a
        command obeyed, a record received...): `event` and `fields` as the event stream writes them."""

    def on_long_running(self, ctx: WorkerContext, job: Job, elapsed: float) -> None:
        """A task without a time limit has run `warn_running_after` seconds (watchdog thread)."""

    def on_hard_limit(self, ctx: WorkerContext, job: Job) -> None:
        """A task ignored its time limit past the grace period (watchdog thread); the thread
        cannot be stopped from outside: the `TimeLimits` policy ends the process."""


class Hooks:
    """Calls one hook on every middleware in order, with the context; a failing hook is logged, never fatal."""

    def __init__(self, middleware: Sequence[Middleware], ctx: WorkerContext) -> None:
        self.middleware = list(middleware)
        self.ctx = ctx
        # Per hook, only the middleware that override it: most hooks run several times per task.
        self._using = {hook: [m for m in self.middleware if getattr(type(m), hook, None) is not base]
                       for hook, base in vars(Middleware).items() if callable(base) and not hook.startswith("_")}

    def call(self, hook: str, *args: Any) -> None:
        for m in self._using[hook]:
            try:
                getattr(m, hook)(self.ctx, *args)
            except Exception:
                log.exception("middleware %s.%s failed", type(m).__name__, hook)

    def after_run(self, finished: Finished) -> Finished:
        for m in self._using["after_run"]:
            try:
                finished = m.after_run(self.ctx, finished)
            except Exception:
                log.exception("middleware %s.after_run failed", type(m).__name__)
        return finished

    def notice(self, event: str, **fields: Any) -> None:
        """Tells every middleware (the `Events` policy writes it to the event stream)."""
        self.call("on_notice", event, fields)

"""Hooks around the worker loop, so policy stays out of it (as in dramatiq).

A middleware overrides any of these; the worker calls them in order. Crash
injection (`yadtq.crash`) is one; metrics or tracing would be others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yadtq.worker import Job, Worker


class Middleware:
    @property
    def wants_before_claim(self) -> bool:
        """Whether `before_claim` must run before every claim. When no middleware
        needs it, the worker claims the next task in the same round trip that
        stores the previous outcome."""
        return type(self).before_claim is not Middleware.before_claim

    @property
    def wants_after_complete(self) -> bool:
        """Whether `after_complete` must run right after each outcome is stored.
        When none needs it, outcomes are pipelined and confirmed before commits."""
        return type(self).after_complete is not Middleware.after_complete

    def before_claim(self, worker: Worker, job: Job) -> None:
        """A task message is about to be claimed in Redis."""

    def before_run(self, worker: Worker, job: Job) -> None:
        """The task is claimed and about to run."""

    def after_run(self, worker: Worker, job: Job, outcome: str) -> None:
        """The task returned or raised; its outcome is not stored yet."""

    def after_complete(self, worker: Worker, job: Job, outcome: str) -> None:
        """The outcome is stored in Redis; the offset is not committed yet."""

    def after_commit(self, worker: Worker, offsets: dict[Any, int]) -> None:
        """Offsets were committed to Kafka."""

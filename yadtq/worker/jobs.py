"""A task while it runs (`Job`) and what its run produced (`Finished`).

Both are immutable: a `Job` is built by the loop thread when the claim comes
back and handed to an executor thread; the `Finished` value comes back the
other way. Neither thread mutates what the other reads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from yadtq.store.claim_replies import Run
from yadtq.task.registry import Task
from yadtq.task.status import Status
from yadtq.worker.tracker import Entry

# How an attempt ended. SUCCESS and FAILED are the statuses the step stores; RETRY stores
# Status.QUEUED (step.lua); ERROR is not judged yet; LOST never ran and stores nothing;
# CANCELLED was interrupted (or never begun) on a cancel: its record says so already (cancel.lua).
SUCCESS, FAILED, CANCELLED = Status.SUCCESS, Status.FAILED, Status.CANCELLED
ERROR, RETRY, LOST = "error", "retry", "lost"


@dataclass(frozen=True)
class Job:
    entry: Entry
    task_id: str
    task: Task
    run: Run
    time_limit: float | None
    claimed_at: float  # monotonic time the claim was sent (its lease started no earlier)
    cancelled: bool = False  # set on the copy `on_hard_limit` gets when the run ignored a cancel

    @property
    def order_key(self) -> str | None:
        return self.entry.order_key


@dataclass(frozen=True)
class Finished:
    """One attempt's end. `status`: success | error (not yet judged) | retry | failed | lost (never ran:
    its claim lapsed before it could start) | cancelled. `delay` is the retry wait in seconds.
    `exception` is what the task raised (for policies such as `RetryRules`), None otherwise."""

    job: Job
    status: str
    result_json: str = "null"
    error: str = ""
    duration: float = 0.0
    delay: float = 0.0
    retryable: bool = True
    requested_delay: float | None = None
    exception: BaseException | None = None

    def but(self, **changes: object) -> Finished:
        return replace(self, **changes)  # type: ignore[arg-type]

"""Where the dashboard reads and acts: one interface, two places behind it.

`RedisSource` (dashboard/redis_source.py) reads Redis and the broker directly, as every
process of the farm does; `ApiSource` (dashboard/api_source.py) goes through the HTTP API
with its bearer token, so the dashboard can run outside the cluster's network without
Redis credentials. `YADTQ_DASHBOARD_API` picks the second. The pages see only `Source`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from yadtq.config import Settings
from yadtq.store.backend import TaskRecord
from yadtq.store.queue_stats import QueueDepth
from yadtq.store.search import SearchPage, StatsReport, TaskQuery
from yadtq.store.timeline import Timeline
from yadtq.store.workflow_calls import WorkflowState


@dataclass
class Stats:
    """Per task type over a window: `types` rows as GET /stats gives them (task, finished, success_rate, ...)."""

    window: float
    finished_in_window: dict[str, int]
    sampled: int
    complete: bool
    types: list[dict[str, Any]]

    @classmethod
    def of(cls, report: StatsReport) -> Stats:
        return cls.from_dict(report.as_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stats:
        return cls(window=d["window"], finished_in_window=d["finished_in_window"], sampled=d["sampled"],
                   complete=d["complete"], types=list(d["types"]))


@dataclass
class TaskView:
    record: TaskRecord
    history: list[tuple[float, str]]
    waiting_because: str | None


class Source(Protocol):
    """What the pages read and do. Errors a user can act on are `YADTQError`s (TaskNotFound for a missing task)."""

    settings: Settings  # the dashboard's own (refresh period, destructive actions, ...)

    @property
    def where(self) -> str:
        """What the dashboard reads, for the page footer: 'Redis redis://…' or 'API http://…'."""
        ...

    # -- reads ------------------------------------------------------------------
    def counts(self) -> dict[str, int]: ...
    def workers(self, prune_after: float | None = None) -> list[dict[str, Any]]: ...
    def partitions(self) -> list[dict[str, Any]]: ...
    def timeline(self, window: float) -> Timeline: ...
    def type_stats(self, window: float) -> Stats: ...
    def search(self, query: TaskQuery, cursor: str | None, limit: int) -> SearchPage: ...
    def task(self, task_id: str, prune_after: float | None = None) -> TaskView | None: ...
    def deaths(self, limit: int) -> list[dict[str, Any]]: ...
    def dead_letters(self, limit: int) -> list[dict[str, Any]]: ...
    def queues(self) -> list[QueueDepth]: ...
    def schedules(self) -> list[dict[str, Any]]: ...
    def recent_workflows(self, limit: int) -> list[dict[str, Any]]: ...
    def workflow(self, workflow_id: str) -> WorkflowState | None: ...

    # -- actions ----------------------------------------------------------------
    def submit(self, task: str, args: list[Any], tries: int) -> str: ...
    def submit_many(self, calls: Sequence[tuple[str, list[Any]]]) -> list[str]: ...
    def requeue(self, task_id: str) -> str: ...
    def cancel(self, task_id: str) -> None: ...
    def command_worker(self, name: str, command: str) -> None: ...
    def add_schedule(self, name: str, task: str, every: int | None, cron: str | None, args: list[Any],
                     catch_up: str) -> str:
        """Adds (or replaces) a schedule; returns how it reads ('nightly: cron 0 3 * * *')."""
        ...
    def remove_schedule(self, name: str) -> None: ...
    def purge(self, status: str) -> int: ...

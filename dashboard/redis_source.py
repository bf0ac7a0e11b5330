"""The dashboard on Redis and the broker: the library's bounded read API, as every farm process uses it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashboard.source import Stats, TaskView
from yadtq.broker.backlog import Backlog
from yadtq.client.client import YADTQ
from yadtq.errors import TaskNotFound
from yadtq.redaction import redact_url
from yadtq.store import search, timeline
from yadtq.store.queue_stats import QueueDepth
from yadtq.store.timeline import Timeline
from yadtq.store.workflow_calls import WorkflowState
from yadtq.task.status import Status


class RedisSource:
    def __init__(self, q: YADTQ, backlog: Backlog | None = None) -> None:
        self.q = q
        self.settings = q.settings
        self.backlog = backlog  # asks the broker for end offsets (records not read yet)

    @property
    def where(self) -> str:
        return f"Redis {redact_url(self.settings.redis_url)} · topic {self.settings.topic}"

    def counts(self) -> dict[str, int]:
        return self.q.backend.counts()

    def workers(self, prune_after: float | None = None) -> list[dict[str, Any]]:
        return search.workers(self.q.live, prune_after=prune_after)

    def partitions(self) -> list[dict[str, Any]]:
        return search.partitions(search.workers(self.q.live), self.backlog.end_offsets() if self.backlog else None)

    def timeline(self, window: float) -> Timeline:
        return timeline.read(self.q.live, self.q.backend, self.settings, window)

    def type_stats(self, window: float) -> Stats:
        return Stats.of(search.type_stats(self.q.backend, window))

    def search(self, query: search.TaskQuery, cursor: str | None, limit: int) -> search.SearchPage:
        return search.search(self.q.backend, query, limit=limit, cursor=cursor)

    def task(self, task_id: str, prune_after: float | None = None) -> TaskView | None:
        try:
            rec = self.q.backend.get(task_id)
        except TaskNotFound:
            return None
        history = self.q.backend.events(task_id)
        why = search.why_queued(rec, search.workers(self.q.live, prune_after=prune_after), history) \
            if rec.status == Status.QUEUED else None
        return TaskView(rec, history, why)

    def deaths(self, limit: int) -> list[dict[str, Any]]:
        return self.q.live.failures(limit)

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        return self.q.live.dead_letters(limit)

    def queues(self) -> list[QueueDepth]:
        return self.q.queues()

    def schedules(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.q.schedules()]

    def recent_workflows(self, limit: int) -> list[dict[str, Any]]:
        return [{"workflow_id": wid, "status": got[0], "result": got[1], "error": got[2]}
                for wid, got in self.q.workflows.store.recent_statuses(limit)]

    def workflow(self, workflow_id: str) -> WorkflowState | None:
        return self.q.workflows.store.get(workflow_id)

    def submit(self, task: str, args: list[Any], tries: int) -> str:
        return self.q.submit(task, args, tries=tries)

    def submit_many(self, calls: Sequence[tuple[str, list[Any]]]) -> list[str]:
        return self.q.submit_many(calls)

    def requeue(self, task_id: str) -> str:
        return self.q.requeue(task_id)

    def cancel(self, task_id: str) -> None:
        self.q.cancel(task_id, by="dashboard")

    def command_worker(self, name: str, command: str) -> None:
        self.q.command_worker(name, command)

    def add_schedule(self, name: str, task: str, every: int | None, cron: str | None, args: list[Any],
                     catch_up: str) -> str:
        state = self.q.add_schedule(name, task, every=every, cron=cron, args=args, catch_up=catch_up)
        return f"{state.spec.name}: {state.spec.when}"

    def remove_schedule(self, name: str) -> None:
        self.q.remove_schedule(name)

    def purge(self, status: str) -> int:
        return self.q.backend.purge(status)

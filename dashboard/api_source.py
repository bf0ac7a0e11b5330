"""The dashboard through the HTTP API (`YADTQ_DASHBOARD_API=http://host:8000`, `YADTQ_API_TOKEN`).

Every read and action is one or a few API calls; nothing here opens Redis or the broker,
so the dashboard needs only the API's address and token. Errors the API answers come back
as `ApiError` (a `YADTQError`) with its message and status code; an API that does not answer
as `ApiUnavailable`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import requests

from dashboard.source import Stats, TaskView
from yadtq.config import Settings
from yadtq.errors import ConnectError, YADTQError
from yadtq.redaction import redact_url
from yadtq.store.backend import TaskRecord
from yadtq.store.queue_stats import QueueDepth
from yadtq.store.search import SearchPage, TaskQuery
from yadtq.store.timeline import Timeline
from yadtq.store.workflow_calls import NodeState, WorkflowState
from yadtq.task.status import STATUSES

BATCH = 1_000  # the API's largest batch (POST /tasks/batch)


class ApiUnavailable(ConnectError):
    service = "the YADTQ API"


class ApiError(YADTQError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ApiSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.dashboard_api.rstrip("/")
        self.timeout = (settings.connect_timeout, 60.0)
        self._local = threading.local()  # a session per thread: every viewer's script runs in its own

    @property
    def http(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            if self.settings.api_token:
                session.headers["Authorization"] = f"Bearer {self.settings.api_token}"
        return session

    @property
    def where(self) -> str:
        return f"API {redact_url(self.base)}"

    def _call(self, method: str, path: str, params: Any = None, body: Any = None) -> Any:
        try:
            got = self.http.request(method, self.base + path, params=params, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ApiUnavailable(self.base, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        if got.status_code >= 400:
            try:
                message = str(got.json().get("error") or got.reason)
            except ValueError:
                message = f"{got.status_code} {got.reason}"
            raise ApiError(got.status_code, message)
        return got.json()

    # -- reads ------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._call("GET", "/counts").items()}

    def workers(self, prune_after: float | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/workers", {"prune_after": prune_after} if prune_after is not None else None))

    def partitions(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/partitions"))

    def timeline(self, window: float) -> Timeline:
        got = self._call("GET", "/timeline", {"window": window})
        return Timeline(series=got["series"], heartbeats=got["heartbeats"], oldest_queued=got["oldest_queued"])

    def type_stats(self, window: float) -> Stats:
        return Stats.from_dict(self._call("GET", "/stats", {"window": window}))

    def search(self, query: TaskQuery, cursor: str | None, limit: int) -> SearchPage:
        params: dict[str, Any] = {"limit": limit, "cursor": cursor, "task": query.task, "worker": query.worker,
                                  "error": query.error, "since": query.since, "until": query.until}
        if tuple(query.statuses) != STATUSES:
            params["status"] = list(query.statuses)
        got = self._call("GET", "/tasks", {k: v for k, v in params.items() if v is not None})
        return SearchPage([record(t) for t in got["tasks"]], got["next_cursor"], got["scanned"])

    def _found(self, path: str) -> Any:
        """GET `path`; None where the API answers 404 (no such task or workflow)."""
        try:
            return self._call("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def task(self, task_id: str, prune_after: float | None = None) -> TaskView | None:
        got = self._found(f"/tasks/{_quote(task_id)}")
        if got is None:
            return None
        return TaskView(record(got), [(h["time"], h["event"]) for h in got["history"]], got["waiting_because"])

    def deaths(self, limit: int) -> list[dict[str, Any]]:
        return list(self._call("GET", "/failures", {"limit": limit}))

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        return list(self._call("GET", "/dead-letters", {"limit": limit}))

    def queues(self) -> list[QueueDepth]:
        return [QueueDepth(r["queue"], r["queued"], r["lag"], r["throughput"], r["dead_letters"])
                for r in self._call("GET", "/queues")]

    def schedules(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/schedules"))

    def recent_workflows(self, limit: int) -> list[dict[str, Any]]:
        return list(self._call("GET", "/workflows", {"limit": limit}))

    def workflow(self, workflow_id: str) -> WorkflowState | None:
        got = self._found(f"/workflows/{_quote(workflow_id)}")
        if got is None:
            return None
        return WorkflowState(workflow_id=got["workflow_id"], status=got["status"], result=got["result"],
                             error=got["error"], created=got["created"], finished=got["finished"],
                             nodes=[NodeState(**n) for n in got["nodes"]], shape={})

    # -- actions ----------------------------------------------------------------
    def submit(self, task: str, args: list[Any], tries: int) -> str:
        return str(self._call("POST", "/tasks", body={"task": task, "args": args, "tries": tries})["task_id"])

    def submit_many(self, calls: Sequence[tuple[str, list[Any]]]) -> list[str]:
        ids: list[str] = []
        for i in range(0, len(calls), BATCH):
            body = {"tasks": [{"task": t, "args": a} for t, a in calls[i:i + BATCH]]}
            ids += self._call("POST", "/tasks/batch", body=body)["task_ids"]
        return ids

    def requeue(self, task_id: str) -> str:
        return str(self._call("POST", f"/tasks/{_quote(task_id)}/requeue")["task_id"])

    def cancel(self, task_id: str) -> None:
        self._call("POST", f"/tasks/{_quote(task_id)}/cancel")

    def command_worker(self, name: str, command: str) -> None:
        self._call("POST", f"/workers/{_quote(name)}/{_quote(command)}")

    def add_schedule(self, name: str, task: str, every: int | None, cron: str | None, args: list[Any],
                     catch_up: str) -> str:
        got = self._call("POST", "/schedules", body={"name": name, "task": task, "every": every, "cron": cron,
                                                      "args": args, "catch_up": catch_up})
        when = f"every {got['every']}s" if got["every"] is not None else f"cron {got['cron']}"
        return f"{got['name']}: {when}"

    def remove_schedule(self, name: str) -> None:
        self._call("DELETE", f"/schedules/{_quote(name)}")

    def purge(self, status: str) -> int:
        return int(self._call("POST", "/tasks/purge", {"status": status})["purged"])


def record(t: dict[str, Any]) -> TaskRecord:
    """A task record from the API's TaskOut (the fields the pages show)."""
    return TaskRecord(task_id=t["task_id"], task=t["task"], status=t["status"], args=t["args"], kwargs=t["kwargs"],
                      result=t.get("result"), error=t.get("error"), attempts=t["attempts"], tries=t.get("tries"),
                      worker=t.get("worker"), submitted=t.get("submitted"), started=t.get("started"),
                      finished=t.get("finished"), partition=t.get("partition"), queue=t.get("queue") or "default",
                      key=t.get("key"), progress=t.get("progress"), progress_message=t.get("progress_message"))


def _quote(part: str) -> str:
    return quote(part, safe="")

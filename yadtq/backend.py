"""The result backend: task records and per-status indexes in Redis.

Every status change goes through a Lua script that moves the task between the
status indexes in the same step, so the index sizes always add up to the
number of task records, and counts and listings never scan the keyspace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from yadtq import scripts
from yadtq.config import Settings
from yadtq.errors import BackendUnavailable, TaskNotFound, YADTQError
from yadtq.keys import FINAL, STATUSES, Keys
from yadtq.messages import TaskMessage


@dataclass(frozen=True)
class TaskRecord:
    """One task as stored. `as_dict()` is what a client sees."""

    task_id: str
    task: str
    status: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    attempts: int = 0
    failures: int = 0
    tries: int | None = None
    worker: str | None = None
    submitted: float | None = None
    started: float | None = None
    finished: float | None = None
    time_limit: float | None = None
    partition: int | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "task-id": self.task_id, "task": self.task, "status": self.status,
            "result": self.result, "error": self.error, "attempts": self.attempts,
            "tries": self.tries, "worker": self.worker, "args": self.args, "kwargs": self.kwargs,
            "submitted": self.submitted, "started": self.started, "finished": self.finished,
        }

    @classmethod
    def from_hash(cls, task_id: str, h: dict[str, str]) -> TaskRecord:
        return cls(
            task_id=task_id, task=h.get("task", ""), status=h.get("status", "queued"),
            args=_loads(h.get("args"), []), kwargs=_loads(h.get("kwargs"), {}),
            result=_loads(h.get("result"), None), error=h.get("error") or None,
            attempts=int(h.get("attempts") or 0), failures=int(h.get("failures") or 0),
            tries=_num(h.get("tries"), int), worker=h.get("worker") or None,
            submitted=_num(h.get("submitted"), float), started=_num(h.get("started"), float),
            finished=_num(h.get("finished"), float), time_limit=_num(h.get("time_limit"), float),
            partition=_num(h.get("partition"), int),
        )


class TaskNotCancellable(YADTQError):
    """Only a queued task can be cancelled; this one is running or finished."""

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id} is {status}; only a queued task can be cancelled")
        self.task_id = task_id
        self.status = status


def _loads(raw: str | None, default: Any) -> Any:
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _num(raw: str | None, kind: type) -> Any:
    if raw is None or raw == "":
        return None
    return kind(float(raw)) if kind is int else kind(raw)


def connect_redis(settings: Settings, *, socket_timeout: float | None = None,
                  retries: int | None = None) -> redis.Redis:
    """A client for `settings.redis_url`; raises `BackendUnavailable` if it does not answer.

    `socket_timeout` bounds every command (the worker's loop must not hang on a
    stalled Redis); `retries=0` turns off redis-py's own retries, for a caller
    that handles outages itself.
    """
    extra: dict[str, Any] = {}
    if retries is not None:
        extra["retry"] = Retry(NoBackoff(), retries)
    client = redis.Redis.from_url(
        settings.redis_url, decode_responses=True,
        socket_connect_timeout=settings.connect_timeout, socket_keepalive=True,
        socket_timeout=socket_timeout, health_check_interval=30,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError], **extra,
    )
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BackendUnavailable(_redacted(settings.redis_url), str(exc).splitlines()[0]) from None
    return client


def _redacted(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class Backend:
    """Task records in Redis. Write methods are atomic scripts; reads are bounded."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._submit = client.register_script(scripts.SUBMIT)
        self._requeue = client.register_script(scripts.REQUEUE)
        self._cancel = client.register_script(scripts.load("cancel"))

    # -- clients ---------------------------------------------------------
    def record_queued(self, messages: Sequence[TaskMessage], default_tries: int) -> None:
        """Writes `queued` records for `messages` in one pipeline (existing ones are kept)."""
        pipe = self.r.pipeline(transaction=False)
        for m in messages:
            self._submit(
                keys=[self.keys.task(m.task_id), self.keys.status("queued")],
                args=[m.submitted_at or time.time(), m.task, json.dumps(list(m.args)),
                      json.dumps(m.kwargs), m.tries or default_tries,
                      m.time_limit or "", m.task_id],
                client=pipe)
        pipe.execute()

    def get(self, task_id: str) -> TaskRecord:
        """Raises `TaskNotFound` for an unknown id."""
        h = self.r.hgetall(self.keys.task(task_id))
        if not h:
            raise TaskNotFound(task_id)
        return TaskRecord.from_hash(task_id, h)

    def get_many(self, task_ids: Iterable[str]) -> list[TaskRecord]:
        """Records of the ids that exist, in order (one round trip)."""
        ids = list(task_ids)
        pipe = self.r.pipeline(transaction=False)
        for tid in ids:
            pipe.hgetall(self.keys.task(tid))
        return [TaskRecord.from_hash(tid, h) for tid, h in zip(ids, pipe.execute()) if h]

    def events(self, task_id: str) -> list[tuple[float, str]]:
        """What the record's timestamps cannot tell: retries, failures, reclaims, requeues."""
        out = []
        for line in self.r.lrange(self.keys.events(task_id), 0, 49):
            ts, _, text = line.partition(" ")
            out.append((float(ts), text))
        return out

    def counts(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for s in STATUSES:
            pipe.zcard(self.keys.status(s))
        return dict(zip(STATUSES, pipe.execute()))

    def list_ids(self, status: str, limit: int = 50, offset: int = 0, newest_first: bool = True) -> list[str]:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        key = self.keys.status(status)
        end = offset + max(limit, 1) - 1
        if newest_first:
            return self.r.zrevrange(key, offset, end)
        return self.r.zrange(key, offset, end)

    def list(self, status: str, limit: int = 50, offset: int = 0, newest_first: bool = True) -> list[TaskRecord]:
        return self.get_many(self.list_ids(status, limit, offset, newest_first))

    def ids_older_than(self, status: str, before: float, limit: int = 1000) -> list[str]:
        return self.r.zrangebyscore(self.keys.status(status), "-inf", before, start=0, num=limit)

    def reset_to_queued(self, task_id: str) -> TaskMessage:
        """Puts a failed (or stale queued) task back to `queued`; returns the message to publish.

        Raises `TaskNotFound`, or `YADTQError` for a task that is running or succeeded.
        """
        got = self._requeue(keys=[self.keys.task(task_id), self.keys.events(task_id)],
                            args=[time.time(), self.settings.prefix, task_id])
        if got[0] == "missing":
            raise TaskNotFound(task_id)
        if got[0] != "ok":
            raise YADTQError(f"task {task_id} is {got[0]}; only failed or queued tasks can be requeued")
        _, name, args, kwargs, tries, limit = got
        return TaskMessage(task_id, name, tuple(_loads(args, [])), _loads(kwargs, {}),
                           int(tries) if tries else None, time.time(), float(limit) if limit else None)

    def cancel(self, task_id: str, by: str = "api") -> TaskRecord:
        """Moves a queued task to `cancelled` (atomically); returns the new record.

        Raises `TaskNotFound`, or `TaskNotCancellable` for a task that is running or finished:
        a running task is never interrupted.
        """
        got = self._cancel(keys=[self.keys.task(task_id), self.keys.status("queued"),
                                 self.keys.status("cancelled"), self.keys.events(task_id)],
                           args=[int(self.settings.result_ttl), by, task_id])
        if got[0] == "missing":
            raise TaskNotFound(task_id)
        if got[0] != "ok":
            raise TaskNotCancellable(task_id, str(got[0]))
        return self.get(task_id)

    def touch_queued(self, task_ids: Sequence[str]) -> None:
        """Re-stamps queued tasks as just published (only those still queued)."""
        if task_ids:
            self.r.zadd(self.keys.status("queued"), {tid: time.time() for tid in task_ids}, xx=True)

    def purge(self, status: str, batch: int = 1000) -> int:
        """Deletes up to `batch` finished tasks of `status` (oldest first); returns how many."""
        if status not in FINAL:
            raise ValueError("only finished tasks (success, failed) can be purged")
        ids = self.r.zrange(self.keys.status(status), 0, batch - 1)
        if ids:
            pipe = self.r.pipeline(transaction=True)
            for tid in ids:
                pipe.delete(self.keys.task(tid), self.keys.events(tid))
            pipe.zrem(self.keys.status(status), *ids)
            pipe.execute()
        return len(ids)

    def prune_finished(self, older_than: float) -> int:
        """Drops index entries of finished tasks whose records expired (result TTL)."""
        removed = 0
        for s in FINAL:
            removed += self.r.zremrangebyscore(self.keys.status(s), "-inf", older_than)
        return removed

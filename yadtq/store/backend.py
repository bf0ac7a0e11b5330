"""The result backend: task records and per-status indexes in Redis.

Every status change goes through a Lua script that moves the task between the
status indexes in the same step, so the index sizes always add up to the
number of task records, and counts and listings never scan the keyspace.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from yadtq.config import DEFAULT_QUEUE, Settings
from yadtq.errors import MessageError, TaskNotFound, YADTQError
from yadtq.store.batch import Batch
from yadtq.store.connection import RedisClient, connect_redis, decoded_hash, decoded_list
from yadtq.store.keyspace import KeySpace
from yadtq.store.replies import RequeueReply, json_field
from yadtq.store.script_calls import (
    CANCEL_TRIES,
    WITHDRAWN_TTL,
    TaskNotCancellable,
    cancel_call,
    check_cancelled,
    made_ids,
    submit_calls,
    submit_replies,
    submit_verdicts,
    undone,
    unsubmit_call,
)
from yadtq.store.scripts import bind
from yadtq.store.shard_reads import merged_by_score, merged_range, summed_cards
from yadtq.task.messages import TaskMessage
from yadtq.task.status import FINAL, STATUSES, Status

# connect_redis lives in yadtq.store.connection; callers that import it from here keep working.
__all__ = ["WITHDRAWN_TTL", "Backend", "TaskNotCancellable", "TaskRecord", "connect_redis"]



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
    queue: str = DEFAULT_QUEUE  # the named queue (its topic) the task is published to
    # `submitted` is the latest (re)publish (a requeue moves it); this is the first, once requeued.
    first_submitted: float | None = None
    # The ordering key: every publish of the task, the first and any later one, goes with it.
    key: str | None = None
    # What the task last reported of its current (or last) run: a fraction 0..1 and a message.
    progress: float | None = None
    progress_message: str | None = None
    eta: float | None = None  # a delayed task: not run before (Redis time)
    expires: float | None = None  # not started by then: ends `expired`

    @property
    def done(self) -> bool:
        return self.status in FINAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "task-id": self.task_id, "task": self.task, "status": self.status,
            "result": self.result, "error": self.error, "attempts": self.attempts,
            "tries": self.tries, "worker": self.worker, "args": self.args, "kwargs": self.kwargs,
            "submitted": self.submitted, "started": self.started, "finished": self.finished,
            "key": self.key,
            "queue": self.queue,
            "progress": self.progress, "progress_message": self.progress_message,
            **{k: v for k, v in (("eta", self.eta), ("expires", self.expires)) if v is not None},
        }

    def message(self) -> TaskMessage:
        """The message that publishes this task again (a requeue, a lost message): the one place a
        record becomes a message, so every path that publishes again keeps the task's ordering key
        and its queue."""
        return TaskMessage(self.task_id, self.task, tuple(self.args), self.kwargs, self.tries, self.submitted,
                           self.time_limit, self.key,
                           queue=None if self.queue == DEFAULT_QUEUE else self.queue)

    @classmethod
    def from_hash(cls, task_id: str, h: dict[str, str]) -> TaskRecord:
        return cls(
            task_id=task_id, task=h.get("task", ""), status=h.get("status", Status.QUEUED),
            args=json_field(h.get("args"), []), kwargs=json_field(h.get("kwargs"), {}),
            result=json_field(h.get("result"), None), error=h.get("error") or None,
            attempts=int(h.get("attempts") or 0), failures=int(h.get("failures") or 0),
            tries=_num(h.get("tries"), int), worker=h.get("worker") or None,
            submitted=_num(h.get("submitted"), float), started=_num(h.get("started"), float),
            finished=_num(h.get("finished"), float), time_limit=_num(h.get("time_limit"), float),
            partition=_num(h.get("partition"), int), first_submitted=_num(h.get("first_submitted"), float),
            key=h.get("key") or None,
            queue=h.get("queue") or DEFAULT_QUEUE,
            progress=_num(h.get("progress"), float), progress_message=h.get("progress_message") or None,
            eta=_num(h.get("eta"), float), expires=_num(h.get("expires"), float),
        )



def _num(raw: str | None, kind: type) -> Any:
    if raw is None or raw == "":
        return None
    return kind(float(raw)) if kind is int else kind(raw)


class Backend:
    """Task records in Redis. Write methods are atomic scripts; reads are bounded."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        # On a Redis Cluster a task's keys are its shard's (docs/redis-cluster.md); else all are `Keys(prefix)`.
        self.space = KeySpace.of(settings)
        self.keys = self.space.base
        self._submit = bind(client, "submit")
        self._requeue = bind(client, "requeue")
        self._unsubmit = bind(client, "unsubmit")
        self._cancel = bind(client, "cancel")

    # -- clients ---------------------------------------------------------
    def record_queued(self, messages: Sequence[TaskMessage], default_tries: int,
                      token: str = "") -> list[str]:
        """Writes `queued` records for `messages` in one pipeline (one script call per shard and chunk of
        messages); existing records are kept.

        Returns one verdict per message: "new" (recorded now as queued: publish it),
        "scheduled" (recorded now as delayed: the scheduler publishes it when due),
        or the status of the record that already had that id with the same body. Raises
        `MessageError` when an id is taken by a task with another body, after undoing
        the records this call made (all or nothing). `token` marks the new
        records as this submit's, so `unsubmit` can undo exactly them.
        """
        batch = Batch(self.r)
        calls, named = submit_calls(self.space, messages, default_tries, token)
        for _, (keys, args) in calls:
            self._submit(keys=keys, args=args, client=batch.on(keys[0]))
        for key, names in named.items():
            batch.on(key).sadd(key, *names)
        replies = submit_replies(len(messages), calls, batch.execute()[:len(calls)])
        verdicts = submit_verdicts(messages, replies)
        if isinstance(verdicts, MessageError):
            self.unsubmit(made_ids(messages, replies), token)  # all or nothing: none of this call's records
            raise verdicts
        return verdicts

    def unsubmit(self, task_ids: Sequence[str], token: str) -> list[str]:
        """Undoes the `queued` records `token`'s submit made, unless a worker claimed them
        since; returns the ids undone. Their ids refuse a late message for a week."""
        batch = Batch(self.r)
        for tid in task_ids:
            keys, args = unsubmit_call(self.space.for_task(tid), tid, token)
            self._unsubmit(keys=keys, args=args, client=batch.on(keys[0]))
        return undone(list(task_ids), batch.execute())

    def get(self, task_id: str) -> TaskRecord:
        """Raises `TaskNotFound` for an unknown id."""
        h = self.r.hgetall(self.space.for_task(task_id).task(task_id))
        if not h:
            raise TaskNotFound(task_id)
        return TaskRecord.from_hash(task_id, decoded_hash(h))

    def get_many(self, task_ids: Iterable[str]) -> list[TaskRecord]:
        """Records of the ids that exist, in order (one round trip)."""
        ids = list(task_ids)
        batch = Batch(self.r)
        for tid in ids:
            key = self.space.for_task(tid).task(tid)
            batch.on(key).hgetall(key)
        return [TaskRecord.from_hash(tid, h) for tid, h in zip(ids, batch.execute(), strict=True) if h]

    def events(self, task_id: str) -> list[tuple[float, str]]:
        """What the record's timestamps cannot tell: retries, failures, reclaims, requeues."""
        out = []
        for line in decoded_list(self.r.lrange(self.space.for_task(task_id).events(task_id), 0, 49)):
            ts, _, text = line.partition(" ")
            out.append((float(ts), text))
        return out

    def counts(self) -> dict[str, int]:
        if self.space.sharded:
            return dict(zip(STATUSES, summed_cards(self.r, self.space, list(STATUSES)), strict=True))
        pipe = self.r.pipeline(transaction=False)
        for s in STATUSES:
            pipe.zcard(self.keys.status(s))
        return dict(zip(STATUSES, pipe.execute(), strict=True))

    def list_ids(self, status: str, limit: int = 50, offset: int = 0, newest_first: bool = True) -> list[str]:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        if self.space.sharded:
            return merged_range(self.r, self.space, status, offset, limit, newest_first)
        key = self.keys.status(status)
        end = offset + max(limit, 1) - 1
        if newest_first:
            return decoded_list(self.r.zrevrange(key, offset, end))
        return decoded_list(self.r.zrange(key, offset, end))

    def list(self, status: str, limit: int = 50, offset: int = 0, newest_first: bool = True) -> list[TaskRecord]:
        return self.get_many(self.list_ids(status, limit, offset, newest_first))

    # `list` below this line is the method above, hence `builtins.list`.
    def ids_older_than(self, status: str, before: float, limit: int = 1000) -> builtins.list[str]:
        if self.space.sharded:
            return [tid for tid, _ in merged_by_score(self.r, self._indexes(status), "-inf", repr(before), limit)]
        return decoded_list(self.r.zrangebyscore(self.keys.status(status), "-inf", before, start=0, num=limit))

    def oldest_entered(self, status: str) -> float | None:
        """When the task longest in `status` entered it (its index's lowest score); None when none is."""
        if self.space.sharded:
            first = merged_by_score(self.r, self._indexes(status), "-inf", "+inf", 1)
            return first[0][1] if first else None
        got = self.r.zrange(self.keys.status(status), 0, 0, withscores=True)
        return float(got[0][1]) if got else None

    def entered_since(self, status: str, since: float, limit: int) -> builtins.list[tuple[str, float]]:
        """(task id, when it entered `status`) of up to `limit` tasks that entered it at `since` or
        later, oldest first."""
        if self.space.sharded:
            return merged_by_score(self.r, self._indexes(status), repr(since), "+inf", limit)
        got: builtins.list[Any] = self.r.zrangebyscore(self.keys.status(status), repr(since), "+inf", start=0,
                                                       num=limit, withscores=True)
        return [(str(member), float(score)) for member, score in got]

    def all_ids(self, status: str, page: int = 1000) -> builtins.list[str]:
        """Every id in `status` now (entered up to a second past Redis's clock), paged by score:
        `page` ids a read, so one read never holds the whole index (on a cluster: shard by shard)."""
        return [tid for key in self._indexes(status) for tid in self._all_ids_of(key, page)]

    def _indexes(self, status: str) -> builtins.list[str]:
        """The index of `status` on each shard (the one index on one server)."""
        return [k.status(status) for k in self.space.shards]

    def _all_ids_of(self, key: str, page: int) -> builtins.list[str]:
        sec, usec = self.r.time()
        until = sec + usec / 1e6 + 1.0
        out: builtins.list[str] = []
        seen: set[str] = set()
        low: float | str = "-inf"
        while True:
            rows: builtins.list[Any] = self.r.zrangebyscore(key, low, until, start=0, num=page, withscores=True)
            got = [(str(row[0]), float(row[1])) for row in rows]
            fresh = [(tid, score) for tid, score in got if tid not in seen]
            if not fresh:
                if len(got) < page:
                    return out
                # A full page of one score, all seen: step past that score.
                low = f"({got[-1][1]}"
                continue
            for tid, _ in fresh:
                seen.add(tid)
                out.append(tid)
            low = fresh[-1][1]

    def reset_to_queued(self, task_id: str, fresh: bool = True) -> TaskMessage:
        """Puts a task back to `queued`; returns the message to publish again.

        Accepts a failed task, a queued one (its message lost), and a `processing`
        one whose lease lapsed (its worker is gone; the fence moves on so the old
        run cannot complete it). `fresh` resets its attempts and cut-off runs and drops its expiry (a
        user's requeue); otherwise the cut-off run is counted in `lost_runs` and the
        expiry stays (the monitor's: past it, the claim ends the task `expired`).
        Raises `TaskNotFound`, or `YADTQError` for a task that succeeded or is
        running under a live lease.
        """
        k = self.space.for_task(task_id)
        for _ in range(5):  # the status index is a key, so the status is read first
            found, queue = self.r.hmget(k.task(task_id), ["status", "queue"])
            if found is None:
                raise TaskNotFound(task_id)
            status = str(found)
            got = RequeueReply.decode(self._requeue(
                keys=[k.task(task_id), k.events(task_id), k.status(status),
                      k.status(Status.QUEUED), k.queue_index(str(queue or DEFAULT_QUEUE))],
                args=[task_id, status, "fresh" if fresh else "lost"]), task_id)
            if got.outcome != "moved":
                break
        if got.outcome == "missing":
            raise TaskNotFound(task_id)
        if got.message is None:
            what = {"running": "running (its lease is live)", "moved": "moved"}.get(got.outcome, got.status)
            raise YADTQError(f"task {task_id} is {what}; only failed, queued or abandoned tasks can be requeued")
        return got.message

    def lapsed(self, grace: float, limit: int = 1000, spare: Collection[str] = ()) -> builtins.list[str]:
        """Ids of `processing` tasks whose lease lapsed more than `grace` seconds ago
        (by Redis server time), except those claimed by a worker incarnation in `spare`; bounded to
        the `limit` longest-running."""
        ids = self.list_ids(Status.PROCESSING, limit=limit, newest_first=False)
        if not ids:
            return []
        sec, usec = self.r.time()
        now = sec + usec / 1e6
        batch = Batch(self.r)
        for tid in ids:
            key = self.space.for_task(tid).task(tid)
            batch.on(key).hmget(key, "lease", "owner")
        claims = batch.execute()
        return [tid for tid, (lease, owner) in zip(ids, claims, strict=True)
                if lease is not None and float(lease) + grace < now and owner not in spare]

    def cancel(self, task_id: str, by: str = "api") -> TaskRecord:
        """Ends a task that has not finished as `cancelled` (atomically); returns the new record.

        A waiting task never runs. A running one is `cancelled` at once and its worker is told
        to interrupt the run (within about half a second; see docs/time-and-flow.md).
        Raises `TaskNotFound`, or `TaskNotCancellable` for a finished task.
        """
        for attempt in range(1, CANCEL_TRIES + 1):
            worker = str(self.r.hget(self.space.for_task(task_id).task(task_id), "worker") or "")
            keys, args = cancel_call(self.space.for_task(task_id), task_id, self.settings.result_ttl, by, worker)
            if check_cancelled(task_id, self._cancel(keys=keys, args=args), last_try=attempt == CANCEL_TRIES):
                break
        return self.get(task_id)

    def touch_queued(self, task_ids: Sequence[str]) -> None:
        """Re-stamps queued tasks as just published (only those still queued)."""
        for keys, ids in self.space.group(task_ids, str).items():
            self.r.zadd(keys.status(Status.QUEUED), {tid: time.time() for _, tid in ids}, xx=True)

    def purge(self, status: str, batch: int = 1000) -> int:
        """Deletes up to `batch` finished tasks of `status` (oldest first); returns how many."""
        if status not in FINAL:
            raise ValueError("only finished tasks (success, failed) can be purged")
        done = 0
        for keys in self.space.shards:  # one on one server; a transaction per shard (one slot) on a cluster
            if done >= batch:
                break
            ids = decoded_list(self.r.zrange(keys.status(status), 0, batch - done - 1))
            if ids:
                pipe = self.r.pipeline(transaction=True)
                for tid in ids:
                    pipe.delete(keys.task(tid), keys.events(tid))
                pipe.zrem(keys.status(status), *ids)
                pipe.execute()
            done += len(ids)
        return done

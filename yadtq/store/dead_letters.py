"""Dead letters in Redis: what `yadtq dlq`, the API and the dashboard list.

A failed task's dead letter is written by the Lua step that stores its failure (step.lua for an
outcome, reject.lua for a record that cannot run), in the same call, so no crash can leave a
`failed` task without one. The step gets the entry from `entry_json` (all but its time and
error, which the script adds with Redis time; for a claim, step.lua composes the same fields from
the claim and the record as read, `ClaimPipeline.letter_where`) and pushes it on the list of the task's queue
**on the task's shard** (`KeySpace.for_task`), the only keys a step may touch on a Redis
Cluster. Records with no task id (unreadable) go to the cluster-wide list (`KeySpace.base`).
On one server both are the same key; on a cluster the readers merge the lists by time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from yadtq import codec
from yadtq.config import Settings
from yadtq.store.connection import RedisClient, decoded_list
from yadtq.store.keyspace import KeySpace
from yadtq.task.queues import QueuePlan, parse_queues

# Each list keeps its newest DLQ_KEPT entries (step.lua and reject.lua trim to the same figure).
DLQ_KEPT = 10_000
RAW_KEPT = 4096  # characters of the raw record kept in Redis (the topic gets it whole, within the message limit)


def entry_fields(settings: Settings, task_id: str | None, task: str | None, partition: int, offset: int,
                 raw: bytes, plan: QueuePlan | None = None) -> dict[str, Any]:
    """A dead letter's fields but its time and error: the raw record, where it came from (its queue's topic
    and partition in it) and its size. `plan`: `settings.queues` parsed, if the caller holds it."""
    queue, in_topic = (plan or parse_queues(settings.queues)).split(partition)
    return {"task_id": task_id, "task": task, "topic": settings.topic_for(queue), "queue": queue,
            "partition": in_topic, "offset": offset, "size": len(raw),
            "raw": raw[:RAW_KEPT].decode("utf-8", errors="replace")}


@dataclass(frozen=True)
class DeadLetter:
    """What a step needs to write a dead letter: the queue whose list it goes to, and `entry_json`."""

    queue: str
    fields_json: str

    @classmethod
    def of(cls, settings: Settings, task_id: str | None, task: str | None, partition: int, offset: int,
           raw: bytes, plan: QueuePlan | None = None) -> DeadLetter:
        fields = entry_fields(settings, task_id, task, partition, offset, raw, plan)
        return cls(fields["queue"], entry_json(fields))


def entry_json(fields: dict[str, Any]) -> str:
    """`fields` as a JSON object the scripts complete: they put `{"ts":<now>,"error":<error>,` before
    its first field, so this must be a non-empty object."""
    assert fields
    return codec.dumps(fields).decode()  # built for every claim: orjson, several times json's speed


class DeadLetterStore:
    def __init__(self, client: RedisClient, space: KeySpace) -> None:
        self.r = client
        self.space = space

    def key(self, task_id: str | None, queue: str | None) -> str:
        """The list a dead letter of `task_id` goes to (what step.lua and reject.lua are given)."""
        keys = self.space.for_task(task_id) if task_id else self.space.base
        return keys.dlq_of(queue)

    def lists(self, queue: str | None) -> list[str]:
        """Every list of `queue`'s dead letters: one on one server, the global one and each shard's on a cluster."""
        keys = [self.space.base.dlq_of(queue), *(k.dlq_of(queue) for k in self.space.shards)]
        return list(dict.fromkeys(keys))

    def add(self, entry: dict[str, Any]) -> None:
        """Writes a dead letter that no step wrote (a record quarantined or foreign): `entry` complete."""
        key = self.key(entry.get("task_id"), entry.get("queue"))
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(key, json.dumps(entry, separators=(",", ":")))
        pipe.ltrim(key, 0, DLQ_KEPT - 1)
        pipe.execute()

    def read(self, limit: int = 100, queue: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` of a queue's dead letters, newest first."""
        lists = self.lists(queue)
        if len(lists) == 1:
            return [json.loads(x) for x in self.r.lrange(lists[0], 0, limit - 1)]
        pipe = self.r.pipeline(transaction=False)
        for key in lists:
            pipe.lrange(key, 0, limit - 1)
        got = [json.loads(x) for rows in pipe.execute() for x in rows]
        got.sort(key=lambda e: float(e.get("ts") or 0), reverse=True)
        return got[:limit]

    def forget(self, task_id: str, queue: str | None = None) -> int:
        """Drops a task's dead letters (it was requeued); returns how many. Reads its shard's list of the
        queue once (at most DLQ_KEPT), and the cluster-wide one where it differs."""
        # The id as each writer spells it, so most entries are passed over unparsed: the steps write
        # orjson's text (`entry_json`: other than ASCII as is), `add` json's (other than ASCII escaped).
        needles = {codec.dumps(task_id).decode(), json.dumps(task_id)}
        removed = 0
        for key in dict.fromkeys([self.key(task_id, queue), self.key(None, queue)]):
            gone = {raw for raw in decoded_list(self.r.lrange(key, 0, -1))
                    if any(n in raw for n in needles) and json.loads(raw).get("task_id") == task_id}
            if gone:
                pipe = self.r.pipeline(transaction=False)
                for raw in gone:
                    pipe.lrem(key, 0, raw)
                removed += sum(int(n) for n in pipe.execute())
        return removed

    def count(self, queue: str | None = None) -> int:
        """How many dead letters a queue keeps (each list capped at DLQ_KEPT)."""
        return self.counts([queue])[0]

    def counts(self, queues: list[str | None]) -> list[int]:
        """`count` of each of `queues`, in one pipeline (one round trip per server)."""
        lists = [self.lists(q) for q in queues]
        pipe = self.r.pipeline(transaction=False)
        for keys in lists:
            for key in keys:
                pipe.llen(key)
        lengths = iter(int(n) for n in pipe.execute())
        return [sum(next(lengths) for _ in keys) for keys in lists]


def complete(fields: dict[str, Any], error: str, ts: float | None = None) -> dict[str, Any]:
    """A dead letter written from Python: `fields` with its error and time."""
    return {"ts": time.time() if ts is None else ts, "error": error, **fields}

"""Delayed tasks waiting in Redis until due: taken atomically by whoever publishes them.

A delayed task (`countdown`/`eta`) is recorded `scheduled` by submit.lua and
sits in the sorted set `scheduled` (id -> due time, Redis time). Any number
of schedulers (every worker runs one, `yadtq.worker.delayed`) call `take`:
take_scheduled.lua hands each due task to exactly one of them, turns it
`queued` and re-arms it `hold` seconds ahead; the taker publishes it and then
`confirm`s. Tasks are taken `Settings.schedule_lead` seconds before their eta, so a burst due
at once is on the broker in time; a worker that claims one early holds it and
claims it again at its eta (step.lua answers 'early'), so it never runs early.
A taker killed between take and publish loses nothing: after
`hold` the task comes due again and another scheduler takes it (its message
may then reach the broker twice; the claim runs it once).

Each look is bounded: `due_ids.lua` returns at most `limit` ids that are due
(ZRANGEBYSCORE with a LIMIT), so 100,000 tasks waiting cost a look nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yadtq.config import Settings
from yadtq.store.batch import Batch
from yadtq.store.connection import RedisClient
from yadtq.store.keyspace import KeySpace
from yadtq.store.scripts import bind
from yadtq.store.shard_reads import earliest
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status
from yadtq.task.timing import Timing

# Seconds a taken task waits for its taker's confirm before another scheduler may take it again.
HOLD = 10.0
# Tasks per take: one Lua call and one producer flush each.
BATCH = 500


@dataclass(frozen=True)
class DueTask:
    """A delayed task taken for publishing; `confirm` it once the broker has it."""

    message: TaskMessage
    armed: str

    @classmethod
    def decode_all(cls, raw: list[Any]) -> list[DueTask]:
        """take_scheduled.lua: per task {id, armed, task, args, kwargs, tries, time_limit, submitted, key, eta,
        expires, queue}."""
        out = []
        for tid, armed, task, args, kwargs, tries, limit_s, submitted, key, eta, expires, *rest in raw:
            timing = Timing(eta=float(eta) if eta else None, expires_at=float(expires) if expires else None)
            msg = TaskMessage(tid, task, tuple(json.loads(args)), json.loads(kwargs), int(tries) if tries else None,
                              float(submitted) if submitted else None, float(limit_s) if limit_s else None,
                              key or None, timing, queue=(rest[0] if rest else "") or None)
            out.append(cls(msg, armed))
        return out


class DelayedTasks:
    """The delayed tasks of one prefix: take the due ones, confirm them, count the waiting."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.space = KeySpace.of(settings)  # on a Redis Cluster, each shard keeps its own set
        self.keys = self.space.base
        self._due_ids = bind(client, "due_ids")
        self._take = bind(client, "take_scheduled")
        self._untake = bind(client, "untake")

    def take(self, limit: int = BATCH, hold: float = HOLD, lead: float | None = None) -> list[DueTask]:
        """Up to `limit` tasks due within `lead` seconds (default `Settings.schedule_lead`), now this
        caller's to publish (re-armed `hold` seconds past the lead); on a cluster, up to `limit` a shard."""
        lead = self.settings.schedule_lead if lead is None else lead
        taken: list[DueTask] = []
        shards = self.space.shards
        if len(shards) == 1:
            found = [self._due_ids(keys=[shards[0].scheduled], args=[limit, lead])]
        else:  # one pipeline per primary (sent at once), not a round trip per shard
            batch = Batch(self.r)
            for k in shards:
                self._due_ids(keys=[k.scheduled], args=[limit, lead], client=batch.on(k.scheduled))
            found = batch.execute()
        for k, due in zip(shards, found, strict=True):
            ids = [str(i) for i in due]
            if ids:
                got = self._take(keys=[k.scheduled, k.broker_epoch, k.status(Status.SCHEDULED),
                                       k.status(Status.QUEUED), k.status(Status.EXPIRED), *(k.task(i) for i in ids)],
                                 args=[hold, 0, lead, *ids])  # ARGV[2] unused: the retention sweep removes records
                taken += DueTask.decode_all(got)
        return taken

    def confirm(self, taken: Sequence[DueTask]) -> None:
        """Published: drops them from the set (unless one was re-armed by another taker since)."""
        for k, group in self.space.group(taken, lambda d: d.message.task_id).items():
            self._untake(keys=[k.scheduled], args=[x for _, d in group for x in (d.message.task_id, d.armed)])

    def waiting(self) -> int:
        """Tasks in the set: scheduled, or taken and not yet confirmed."""
        return sum(int(self.r.zcard(k.scheduled)) for k in self.space.shards)

    def next_due(self) -> float | None:
        """Redis time the earliest waiting task is due."""
        return earliest(self.r, [k.scheduled for k in self.space.shards])

"""The broker epoch Redis remembers, and the epoch each task's latest message went to.

A memory-only broker that restarts loses its log; its epoch marker (yadtq.broker.clients.EpochProbe)
tells. Redis keeps the last epoch seen (`Keys.broker_epoch`), and each task record notes the
epoch its latest message went to (`epoch`), so the monitor knows which messages a restart lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from yadtq.store.batch import Batch
from yadtq.store.connection import RedisClient
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace


class EpochRecords:
    def __init__(self, client: RedisClient, keys: Keys, space: KeySpace | None = None) -> None:
        """`space`: where task records live (a Redis Cluster's shards each keep a copy of the epoch,
        read by the submit and claim steps on them); None: all under `keys`, one server."""
        self.r = client
        self.keys = keys
        self.space = space or KeySpace(keys.prefix)

    def stored(self) -> str | None:
        """The broker epoch last seen; None before any was."""
        epoch = self.r.get(self.keys.broker_epoch)
        return None if epoch is None else str(epoch)

    def remember(self, epoch: str, *, first_only: bool = False) -> None:
        """Notes `epoch` as the broker's; `first_only` keeps one already noted."""
        self.r.set(self.keys.broker_epoch, epoch, nx=first_only)
        if self.space.sharded:  # each shard's copy (submit.lua and take_due.lua read their own shard's)
            batch = Batch(self.r)
            for k in self.space.shards:
                batch.on(k.broker_epoch).set(k.broker_epoch, epoch, nx=first_only)
            batch.execute()

    def of_tasks(self, task_ids: Sequence[str]) -> list[str]:
        """The epoch each task's latest message went to, in order ('': not noted, or no record; a record
        leaves out an epoch unknown when its message went, rather than store it empty)."""
        batch = Batch(self.r)
        for tid in task_ids:
            key = self.space.for_task(tid).task(tid)
            batch.on(key).hget(key, "epoch")
        return ["" if e is None else str(e) for e in batch.execute()]

    def status_and_epoch(self, task_ids: Sequence[str]) -> list[tuple[str | None, str | None]]:
        """(status, epoch of its latest message) of each task, in order; (None, None) for no record, and
        epoch '' when not noted (see `of_tasks`)."""
        batch = Batch(self.r)
        for tid in task_ids:
            key = self.space.for_task(tid).task(tid)
            batch.on(key).hmget(key, "status", "epoch")
        return [(None, None) if s is None else (str(s), "" if e is None else str(e)) for s, e in batch.execute()]

    def note(self, task_ids: Sequence[str], epoch: str) -> None:
        """Notes that the latest messages of `task_ids` went to `epoch` (one round trip)."""
        batch = Batch(self.r)
        for tid in task_ids:
            key = self.space.for_task(tid).task(tid)
            batch.on(key).hset(key, "epoch", epoch)
        batch.execute()

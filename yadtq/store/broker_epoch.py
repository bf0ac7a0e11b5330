"""The broker epoch Redis remembers, and the epoch each task's latest message went to.

A memory-only broker that restarts loses its log; its epoch marker (yadtq.broker.clients.EpochProbe)
tells. Redis keeps the last epoch seen (`Keys.broker_epoch`), and each task record notes the
epoch its latest message went to (`epoch`), so the monitor knows which messages a restart lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from yadtq.store.connection import RedisClient
from yadtq.store.keys import Keys


class EpochRecords:
    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    def stored(self) -> str | None:
        """The broker epoch last seen; None before any was."""
        epoch = self.r.get(self.keys.broker_epoch)
        return None if epoch is None else str(epoch)

    def remember(self, epoch: str, *, first_only: bool = False) -> None:
        """Notes `epoch` as the broker's; `first_only` keeps one already noted."""
        self.r.set(self.keys.broker_epoch, epoch, nx=first_only)

    def of_tasks(self, task_ids: Sequence[str]) -> list[str | None]:
        """The epoch each task's latest message went to (None: not noted, or no record), in order."""
        pipe = self.r.pipeline(transaction=False)
        for tid in task_ids:
            pipe.hget(self.keys.task(tid), "epoch")
        return [None if e is None else str(e) for e in pipe.execute()]

    def status_and_epoch(self, task_ids: Sequence[str]) -> list[tuple[str | None, str | None]]:
        """(status, epoch of its latest message) of each task, in order; (None, None) for no record."""
        pipe = self.r.pipeline(transaction=False)
        for tid in task_ids:
            pipe.hmget(self.keys.task(tid), "status", "epoch")
        return [(None if s is None else str(s), None if e is None else str(e)) for s, e in pipe.execute()]

    def note(self, task_ids: Sequence[str], epoch: str) -> None:
        """Notes that the latest messages of `task_ids` went to `epoch` (one round trip)."""
        pipe = self.r.pipeline(transaction=False)
        for tid in task_ids:
            pipe.hset(self.keys.task(tid), "epoch", epoch)
        pipe.execute()

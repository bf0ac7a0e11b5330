"""Records that cannot run: their task is marked failed (never one that belongs to another body)."""

from __future__ import annotations

from typing import Protocol

from yadtq.config import Settings
from yadtq.store.connection import RedisClient
from yadtq.store.dead_letters import DeadLetter
from yadtq.store.keyspace import KeySpace
from yadtq.store.replies import RejectReply
from yadtq.store.scripts import bind
from yadtq.task.status import Status


class RejectedRecord(Protocol):
    """What the store needs of a record that cannot run (yadtq.worker.records.Rejected)."""

    @property
    def error(self) -> str: ...

    @property
    def task_id(self) -> str | None: ...

    @property
    def task(self) -> str | None: ...

    @property
    def digest(self) -> str: ...


class RejectStore:
    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.space = KeySpace.of(settings)
        self._reject = bind(client, "reject")

    def reject(self, work: RejectedRecord, worker: str, dead: DeadLetter | None = None) -> str:
        """'rejected' | 'foreign' (the id is another task's: untouched) | the status it was left in.
        The record's dead letter `dead` is written in the same call, whichever."""
        assert work.task_id
        k = self.space.for_task(work.task_id)
        raw = self._reject(keys=[k.task(work.task_id), k.events(work.task_id), k.status(Status.QUEUED),
                                 k.status(Status.FAILED), k.failed_by, k.dlq_of(dead.queue if dead else None)],
                           args=[work.task_id, work.task or "", work.error, work.digest, worker,
                                 dead.fields_json if dead else ""])
        return RejectReply.decode(raw).outcome

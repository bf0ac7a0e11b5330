"""The claim pipeline: the worker's typed contract with Redis.

Every step is one Lua script in yadtq/store/lua/ (its header names KEYS and ARGV),
bound by yadtq.store.scripts; replies are decoded by yadtq.store.claim_replies
into dataclasses (re-exported here), so the worker never reads positional lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from yadtq import codec
from yadtq.config import DEFAULT_QUEUE, Settings
from yadtq.store.claim_replies import (
    Busy,
    Done,
    DueRetry,
    Early,
    Foreign,
    Limited,
    Parked,
    Quarantined,
    Run,
    StepReply,
    Verdict,
    decode_renewals,
)
from yadtq.store.connection import RedisClient
from yadtq.store.keys import Keys
from yadtq.store.replication import ReplicaAck
from yadtq.store.replies import decode_flag
from yadtq.store.scripts import bind
from yadtq.task.messages import TaskMessage
from yadtq.task.queues import parse_queues
from yadtq.task.status import Status

__all__ = ["Busy", "Claim", "ClaimPipeline", "ClaimedWork", "Done", "DueRetry", "Early", "Foreign", "Limited",
           "Outcome", "Parked", "Quarantined", "Run", "Verdict"]


@dataclass(frozen=True)
class Outcome:
    """What to store for one finished attempt. `park` > 0 parks a retry in Redis for that long."""

    task_id: str
    fence: str
    status: str  # Status.SUCCESS | "retry" (stored as Status.QUEUED) | Status.FAILED
    result_json: str = "null"
    error: str = ""
    park: float = 0.0


class ClaimedWork(Protocol):
    """What a claim needs of a record (yadtq.worker.records.TaskWork): its message and body digest."""

    @property
    def message(self) -> TaskMessage: ...

    @property
    def digest(self) -> str: ...


@dataclass(frozen=True)
class Claim:
    work: ClaimedWork
    partition: int
    offset: int
    # Over its rate, wait in Redis for a booked start rather than in the worker's buffer (asked
    # when its partition's buffer is crowded: waiting there would pause the partition).
    park: bool = False


class ClaimPipeline:
    """Claim, complete, renew, confirm, release, and the parked retries, for one worker incarnation."""

    def __init__(self, client: RedisClient, settings: Settings, worker: str, incarnation: str) -> None:
        self.r = client
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.worker = worker
        self.incarnation = incarnation
        self._step = bind(client, "step")
        # Behind Sentinel, a step waits for a replica: an outcome the worker acts on survives a failover.
        self.replica_ack = ReplicaAck.for_settings(settings)
        self._renew = bind(client, "renew")
        self._confirm = bind(client, "confirm")
        self._release = bind(client, "release")
        self._take_due = bind(client, "take_due")
        self._untake = bind(client, "untake")
        self.plan = parse_queues(settings.queues)
        k = self.keys
        self._fixed = [k.status(Status.QUEUED), k.status(Status.PROCESSING), k.status(Status.SUCCESS),
                       k.status(Status.FAILED), k.done_by, k.failed_by, k.retries, k.limits,
                       k.scheduled, k.status(Status.SCHEDULED), k.status(Status.EXPIRED)]

    def _queue_of(self, named: str | None, partition: int) -> str:
        """The queue a claimed record came from ('' for the default queue): as its message names it,
        else by the topic of its partition (a message from a foreign client to a queue's topic)."""
        queue = named or self.plan.queue_of(partition)
        return "" if queue == DEFAULT_QUEUE else queue

    def step(self, outcomes: Sequence[Outcome], claims: Sequence[Claim]) -> tuple[list[bool], list[Verdict]]:
        """Stores `outcomes` (True: stored; False: fenced, the claim was lost) and claims `claims`.

        Sending the same step again after a lost connection is safe: an outcome
        already stored reads back as stored, a claim already made as the same claim.
        """
        s = self.settings
        keys = list(self._fixed)
        # ARGV[4] serves a workflow's state only: task records leave by the retention sweep (yadtq.store.retention).
        args: list[Any] = [self.worker, self.incarnation, s.lease, int(s.result_ttl), len(outcomes), s.max_lost_runs]
        for o in outcomes:
            keys += [self.keys.task(o.task_id), self.keys.events(o.task_id)]
            args += [o.task_id, o.fence, o.status, o.result_json, o.error, o.park]
        for c in claims:
            m = c.work.message
            keys += [self.keys.task(m.task_id), self.keys.events(m.task_id), self.keys.withdrawn(m.task_id),
                     self.keys.limit_rate(m.task), self.keys.limit_running(m.task), self.keys.limit_booked(m.task)]
            # Plain JSON values (a decoded message's), so codec.dumps writes what json.dumps would.
            args += [m.task_id, m.task, codec.dumps(list(m.args)), codec.dumps(m.kwargs), m.tries or s.tries,
                     m.time_limit or "", m.submitted_at or "", c.partition, c.offset, c.work.digest, m.key or "",
                     *m.timing.lua_args(), self._queue_of(m.queue, c.partition), "1" if c.park else ""]
        raw = self._step(keys=keys, args=args) if self.replica_ack is None \
            else self.replica_ack.call(self.r, self._step, keys, args)
        reply = StepReply.decode(raw, len(outcomes))
        return reply.stored, reply.verdicts

    def renew(self, claims: Sequence[tuple[str, str]]) -> list[bool]:
        """Extends the leases of (task id, fence) claims; False where the claim was lost."""
        if not claims:
            return []
        reply = self._renew(keys=[self.keys.task(t) for t, _ in claims],
                            args=[self.settings.lease, self.incarnation, *(f for _, f in claims)])
        return decode_renewals(reply)

    def confirm(self, task_id: str, fence: str) -> bool:
        """True if the claim is still current and unexpired (its lease is extended)."""
        return decode_flag(self._confirm(keys=[self.keys.task(task_id)],
                                         args=[fence, self.incarnation, self.settings.lease]))

    def release(self, task_id: str, fence: str, *, started: bool) -> bool:
        k = self.keys
        return decode_flag(self._release(keys=[k.task(task_id), k.status(Status.PROCESSING), k.status(Status.QUEUED),
                                               k.events(task_id)], args=[fence, task_id, "0" if started else "1"]))

    def take_due(self, limit: int = 200, hold: float = 30.0) -> list[DueRetry]:
        """Parked retries that are due, re-armed `hold` seconds ahead until `untake` confirms them."""
        ids = [str(i) for i in self.r.zrangebyscore(self.keys.retries, "-inf", "+inf", start=0, num=limit)]
        if not ids:
            return []
        got = self._take_due(keys=[self.keys.retries, self.keys.broker_epoch, *(self.keys.task(i) for i in ids)],
                             args=[hold, *ids])
        return DueRetry.decode_all(got)

    def untake(self, taken: Sequence[DueRetry]) -> None:
        if taken:
            self._untake(keys=[self.keys.retries], args=[x for d in taken for x in (d.message.task_id, d.armed)])

    def next_due(self) -> float | None:
        """Redis time of the earliest parked retry."""
        got = self.r.zrange(self.keys.retries, 0, 0, withscores=True)
        return float(got[0][1]) if got else None

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
from yadtq.store.batch import Batch
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
from yadtq.store.cluster_limits import Admission, ClusterLimits
from yadtq.store.connection import RedisClient
from yadtq.store.dead_letters import RAW_KEPT, DeadLetter, entry_fields
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.replication import ReplicaAck
from yadtq.store.replies import decode_flag
from yadtq.store.scripts import bind
from yadtq.store.shard_reads import earliest
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
    # A failure's dead letter (`ClaimPipeline.dead_letter`), pushed by the step that stores the failure.
    dead_letter: DeadLetter | None = None


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
    # The record as read from the broker: the dead letter the step writes if this claim quarantines the task.
    raw: bytes | None = None


class ClaimPipeline:
    """Claim, complete, renew, confirm, release, and the parked retries, for one worker incarnation."""

    def __init__(self, client: RedisClient, settings: Settings, worker: str, incarnation: str) -> None:
        self.r = client
        self.settings = settings
        # On a Redis Cluster a step is one call per shard its tasks are on (docs/redis-cluster.md).
        self.space = KeySpace.of(settings)
        self.keys = self.space.base
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
        # On a cluster, limits are judged on the cluster-wide slot before the claims (yadtq.store.cluster_limits).
        self.limits = ClusterLimits(client, self.keys, incarnation, settings.lease) if self.space.sharded else None
        self._where: dict[int, str] = {}  # partition -> letter_where

    @staticmethod
    def _fixed(k: Keys) -> list[str]:
        return [k.status(Status.QUEUED), k.status(Status.PROCESSING), k.status(Status.SUCCESS),
                k.status(Status.FAILED), k.done_by, k.failed_by, k.retries, k.limits,
                k.scheduled, k.status(Status.SCHEDULED), k.status(Status.EXPIRED)]

    def _queue_of(self, named: str | None, partition: int) -> str:
        """The queue a claimed record came from ('' for the default queue): as its message names it,
        else by the topic of its partition (a message from a foreign client to a queue's topic)."""
        queue = named or self.plan.queue_of(partition)
        return "" if queue == DEFAULT_QUEUE else queue

    def dead_letter(self, task_id: str | None, task: str | None, partition: int, offset: int,
                    raw: bytes) -> DeadLetter:
        """The dead letter a step writes with a failure (yadtq.store.dead_letters): where the record came from."""
        return DeadLetter.of(self.settings, task_id, task, partition, offset, raw, self.plan)

    def letter_where(self, partition: int) -> str:
        """The members of a claim's dead letter that step.lua cannot know (topic, queue, partition in the
        topic), as JSON members without braces: the same for every record of a partition."""
        where = self._where.get(partition)
        if where is None:
            fields = entry_fields(self.settings, None, None, partition, 0, b"", self.plan)
            where = self._where[partition] = codec.dumps(
                {k: fields[k] for k in ("topic", "queue", "partition")}).decode()[1:-1]
        return where

    def _claim_letter(self, c: Claim) -> tuple[str, bytes]:
        """step.lua's two dead letter arguments of a claim. A record in ASCII within RAW_KEPT (its kept
        text is itself) goes as read, and the script composes the entry only if the claim quarantines the
        task; another is sent as a whole entry (`DeadLetter`), as an outcome's."""
        raw = c.raw
        if raw is None:
            return "", b""
        if len(raw) <= RAW_KEPT and raw and raw.isascii():
            return self.letter_where(c.partition), raw
        m = c.work.message
        return self.dead_letter(m.task_id, m.task, c.partition, c.offset, raw).fields_json, b""

    def step(self, outcomes: Sequence[Outcome], claims: Sequence[Claim]) -> tuple[list[bool], list[Verdict]]:
        """Stores `outcomes` (True: stored; False: fenced, the claim was lost) and claims `claims`.

        Sending the same step again after a lost connection is safe: an outcome
        already stored reads back as stored, a claim already made as the same claim.
        """
        if not self.space.sharded:
            return self._step_on(self.keys, outcomes, claims)
        # Limits first, on the cluster-wide slot (yadtq.store.cluster_limits): a claim over its limit
        # is answered there and never sent to its shard.
        gate = self.limits.admit([c.work.message for c in claims]) if self.limits is not None and claims else {}
        sent = [c for i, c in enumerate(claims) if not isinstance(gate.get(i), Limited)]
        stored, got = self._sharded_step(outcomes, sent)
        replies = iter(got)
        verdicts = [v if isinstance(v := gate.get(i), Limited) else next(replies) for i in range(len(claims))]
        if self.limits is not None:
            self.limits.settle({i: a for i, a in gate.items() if isinstance(a, Admission)},
                               [c.work.message.task_id for c in claims], verdicts)
        return stored, verdicts

    def _sharded_step(self, outcomes: Sequence[Outcome], claims: Sequence[Claim]) -> tuple[list[bool], list[Verdict]]:
        # One call per shard, each atomic on its slot, pipelined per node (the nodes' pipelines sent at
        # once: about one round trip, not one per shard); the replies are put back in the caller's order.
        stored: list[bool] = [False] * len(outcomes)
        verdicts: list[Verdict | None] = [None] * len(claims)
        by_outcome = self.space.group(outcomes, lambda o: o.task_id)
        by_claim = self.space.group(claims, lambda c: c.work.message.task_id)
        batch = Batch(self.r)
        sent = []
        for shard in {**by_outcome, **by_claim}:
            outs, cls = by_outcome.get(shard, []), by_claim.get(shard, [])
            keys, args = self._step_call(shard, [o for _, o in outs], [c for _, c in cls])
            self._step(keys=keys, args=args, client=batch.on(keys[0]))
            sent.append((outs, cls))
        if self.limits is not None:  # the ended runs' counts, in the same round trip
            self.limits.ended([o.task_id for o in outcomes], batch)
        replies = batch.execute()
        for (outs, cls), raw in zip(sent, replies, strict=False):  # the limits' reply, if any, comes last
            reply = StepReply.decode(raw, len(outs))
            for (i, _), ok in zip(outs, reply.stored, strict=True):
                stored[i] = ok
            for (i, _), verdict in zip(cls, reply.verdicts, strict=True):
                verdicts[i] = verdict
        return stored, [v for v in verdicts if v is not None]

    def _step_on(self, k: Keys, outcomes: Sequence[Outcome], claims: Sequence[Claim]
                 ) -> tuple[list[bool], list[Verdict]]:
        keys, args = self._step_call(k, outcomes, claims)
        raw = self._step(keys=keys, args=args) if self.replica_ack is None \
            else self.replica_ack.call(self.r, self._step, keys, args)
        reply = StepReply.decode(raw, len(outcomes))
        return reply.stored, reply.verdicts

    def _step_call(self, k: Keys, outcomes: Sequence[Outcome], claims: Sequence[Claim]) -> tuple[list[str], list[Any]]:
        """step.lua's KEYS and ARGV for these outcomes and claims, all under `k`."""
        s = self.settings
        keys = self._fixed(k)
        # ARGV[4] serves a workflow's state only: task records leave by the retention sweep (yadtq.store.retention).
        args: list[Any] = [self.worker, self.incarnation, s.lease, int(s.result_ttl), len(outcomes), s.max_lost_runs]
        for o in outcomes:
            dl = o.dead_letter
            keys += [k.task(o.task_id), k.events(o.task_id), k.dlq_of(dl.queue if dl else None)]
            args += [o.task_id, o.fence, o.status, o.result_json, o.error, o.park, dl.fields_json if dl else ""]
        for c in claims:
            m = c.work.message
            # A claim that quarantines its task writes the dead letter in the same call: step.lua composes
            # it from the claim and these (a normal claim carries no entry built for it).
            letter, raw = self._claim_letter(c)
            keys += [k.task(m.task_id), k.events(m.task_id), k.withdrawn(m.task_id),
                     k.limit_rate(m.task), k.limit_running(m.task), k.limit_booked(m.task),
                     k.dlq_of(self.plan.split(c.partition)[0] if letter else None)]
            # Plain JSON values (a decoded message's), so codec.dumps writes what json.dumps would.
            args += [m.task_id, m.task, codec.dumps(list(m.args)), codec.dumps(m.kwargs), m.tries or s.tries,
                     m.time_limit or "", m.submitted_at or "", c.partition, c.offset, c.work.digest, m.key or "",
                     *m.timing.lua_args(), self._queue_of(m.queue, c.partition), "1" if c.park else "",
                     letter, raw]
        return keys, args

    def renew(self, claims: Sequence[tuple[str, str]]) -> list[bool]:
        """Extends the leases of (task id, fence) claims; False where the claim was lost."""
        renewed = [False] * len(claims)
        for k, group in self.space.group(claims, lambda c: c[0]).items():  # one group on one server
            reply = self._renew(keys=[k.task(t) for _, (t, _) in group],
                                args=[self.settings.lease, self.incarnation, *(f for _, (_, f) in group)])
            for (i, _), ok in zip(group, decode_renewals(reply), strict=True):
                renewed[i] = ok
        if self.limits is not None:
            self.limits.renew([t for (t, _), ok in zip(claims, renewed, strict=True) if ok])
            self.limits.forget([t for (t, _), ok in zip(claims, renewed, strict=True) if not ok])
        return renewed

    def confirm(self, task_id: str, fence: str) -> bool:
        """True if the claim is still current and unexpired (its lease is extended)."""
        return decode_flag(self._confirm(keys=[self.space.for_task(task_id).task(task_id)],
                                         args=[fence, self.incarnation, self.settings.lease]))

    def release(self, task_id: str, fence: str, *, started: bool) -> bool:
        k = self.space.for_task(task_id)
        released = decode_flag(self._release(keys=[k.task(task_id), k.status(Status.PROCESSING),
                                                   k.status(Status.QUEUED), k.events(task_id), k.retries],
                                             args=[fence, task_id, "0" if started else "1"]))
        if self.limits is not None:
            batch = Batch(self.r)
            self.limits.ended([task_id], batch)
            batch.execute()
        return released

    def take_due(self, limit: int = 200, hold: float = 30.0) -> list[DueRetry]:
        """Parked retries that are due, re-armed `hold` seconds ahead until `untake` confirms them
        (on a cluster: up to `limit` of each shard's)."""
        taken: list[DueRetry] = []
        shards = self.space.shards
        if len(shards) == 1:
            ids_by_shard = [[str(i) for i in self.r.zrangebyscore(shards[0].retries, "-inf", "+inf", start=0,
                                                                  num=limit)]]
        else:  # one pipeline per primary (sent at once), not a round trip per shard
            batch = Batch(self.r)
            for k in shards:
                batch.on(k.retries).zrangebyscore(k.retries, "-inf", "+inf", start=0, num=limit)
            ids_by_shard = [[str(i) for i in got] for got in batch.execute()]
        for k, ids in zip(shards, ids_by_shard, strict=True):
            if ids:
                got = self._take_due(keys=[k.retries, k.broker_epoch, *(k.task(i) for i in ids)], args=[hold, *ids])
                taken += DueRetry.decode_all(got)
        return taken

    def untake(self, taken: Sequence[DueRetry]) -> None:
        for k, group in self.space.group(taken, lambda d: d.message.task_id).items():
            self._untake(keys=[k.retries], args=[x for _, d in group for x in (d.message.task_id, d.armed)])

    def next_due(self) -> float | None:
        """Redis time of the earliest parked retry."""
        return earliest(self.r, [k.retries for k in self.space.shards])

"""Per named queue: depth, lag, throughput and dead letters, counted in Redis.

Not from the broker's offsets: the embedded broker's end offsets are wrong after batched
produces (docs/brokers.md). Each queue has an index of the ids submitted (or requeued) to it,
`Keys.queue_index`, written in the same script as the `queued` index. The step that stores a
task's end (success, failed, expired) takes its id out; a running one stays, as a retry brings it
back, and the few that end otherwise (cancelled) stay until pruned here (queue_prune.lua), so:

* depth: the ids in both the queue's index and `queued` (ZINTERCARD: no ids cross the wire);
* lag: how long the oldest task still queued in it has waited;
* throughput: tasks finished per second over the last `window` seconds, estimated: the exact
  number finished (all queues) times the share of this queue among the newest finished ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from yadtq.config import DEFAULT_QUEUE
from yadtq.store.batch import Batch
from yadtq.store.connection import RedisClient, decoded_list
from yadtq.store.dead_letters import DeadLetterStore
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.scripts import bind
from yadtq.task.status import Status

SAMPLE = 500  # newest finished tasks looked at for the throughput shares
LOOK = 100  # index entries looked at for the oldest still queued
PRUNE_SLACK = 1_000  # ids that left `queued` an index may hold before it is pruned


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    queued: int  # tasks waiting in it now
    lag: float | None  # seconds the oldest of them has waited (None: none waits)
    throughput: float  # tasks finished per second over the window (estimate)
    dead_letters: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class QueueStats:
    """Per-queue figures; on a Redis Cluster each shard keeps its own queue indexes (docs/redis-cluster.md)
    and the figures add up over the shards (a queue's lag: its longest-waiting task on any shard), as do
    the dead letters (each on its task's shard, written by the step that failed it)."""

    def __init__(self, client: RedisClient, keys: Keys, space: KeySpace | None = None) -> None:
        self.r = client
        self.keys = keys
        self.space = space or KeySpace(keys.prefix)
        self._prune = bind(client, "queue_prune")

    def known(self, also: tuple[str, ...] = ()) -> list[str]:
        """The default queue, every queue tasks were submitted to, and `also` (say, served ones)."""
        named = set(also)
        batch = Batch(self.r)
        for k in self.space.shards:
            batch.on(k.queues).smembers(k.queues)
        for members in batch.execute():
            named |= set(decoded_list(list(members)))
        return [DEFAULT_QUEUE, *sorted(named - {DEFAULT_QUEUE})]

    def depth(self, queue: str) -> int:
        return self.depths([queue])[queue]

    def depths(self, queues: list[str]) -> dict[str, int]:
        """Tasks waiting in each queue: one batch over every (shard, queue), one round trip per server."""
        cells = [(k, q) for k in self.space.shards for q in queues]
        batch = Batch(self.r)
        for k, q in cells:
            index, queued = k.queue_index(q), k.status(Status.QUEUED)
            batch.on(index).zintercard(2, [index, queued])
            batch.on(index).zcard(index)
        replies = batch.execute()
        out = dict.fromkeys(queues, 0)
        for i, (k, q) in enumerate(cells):
            depth, size = int(replies[2 * i]), int(replies[2 * i + 1])
            out[q] += depth
            if size > 2 * depth + PRUNE_SLACK:
                self._prune_on(k, q)
        return out

    def prune(self, queue: str) -> None:
        """Keeps in the queue's index only the ids queued or processing (queue_prune.lua)."""
        for k in self.space.shards:
            self._prune_on(k, queue)

    def _prune_on(self, k: Keys, queue: str) -> None:
        index = k.queue_index(queue)
        self._prune(keys=[index, k.status(Status.QUEUED), k.status(Status.PROCESSING),
                          f"{index}:scratch", k.status(Status.SCHEDULED)])

    def lag(self, queue: str, now: float) -> float | None:
        return self.lags([queue], now)[queue]

    def lags(self, queues: list[str], now: float) -> dict[str, float | None]:
        """How long the oldest task still queued in each queue has waited (its longest on any shard):
        two batches over every (shard, queue); a shard whose index head is all gone is pruned and read again."""
        cells = [(k, q) for k in self.space.shards for q in queues]
        heads = Batch(self.r)
        for k, q in cells:
            heads.on(k.queue_index(q)).zrange(k.queue_index(q), 0, LOOK - 1, withscores=True)
        rows = heads.execute()
        still = Batch(self.r)
        for (k, q), got in zip(cells, rows, strict=True):
            if got:
                still.on(k.queue_index(q)).zmscore(k.status(Status.QUEUED), [str(r[0]) for r in got])
        found = iter(still.execute())
        out: dict[str, float | None] = dict.fromkeys(queues)
        for (k, q), got in zip(cells, rows, strict=True):
            if not got:
                continue
            oldest = next((float(score) for (_, score), there in zip(got, next(found), strict=True)
                           if there is not None), None)
            lag = max(0.0, now - oldest) if oldest is not None else self._lag_after_prune(k, q, now)
            if lag is not None:
                out[q] = max(lag, out[q] or 0.0)
        return out

    def _lag_after_prune(self, k: Keys, queue: str, now: float) -> float | None:
        self._prune_on(k, queue)  # the head was all gone: drop it and look once more
        index = k.queue_index(queue)
        rows: list[Any] = self.r.zrange(index, 0, LOOK - 1, withscores=True)
        if not rows:
            return None
        still = self.r.zmscore(k.status(Status.QUEUED), [str(r[0]) for r in rows])
        return next((max(0.0, now - float(score)) for (_, score), there in zip(rows, still, strict=True)
                     if there is not None), None)

    def throughput(self, queues: list[str], now: float, window: float) -> dict[str, float]:
        """Finished per second in the last `window` seconds, per queue (success and failed): each
        (shard, status) index's count and its newest `SAMPLE` ids in one batch, their queues in a second."""
        out = dict.fromkeys(queues, 0.0)
        cells = [(k, k.status(s)) for k in self.space.shards for s in (Status.SUCCESS, Status.FAILED)]
        newest = Batch(self.r)
        for _, key in cells:
            newest.on(key).zcount(key, now - window, "+inf")
            newest.on(key).zrevrangebyscore(key, "+inf", now - window, start=0, num=SAMPLE)
        replies = newest.execute()
        reads = Batch(self.r)
        for i, (k, _) in enumerate(cells):
            for tid in decoded_list(replies[2 * i + 1]):
                reads.on(k.task(tid)).hget(k.task(tid), "queue")
        named = iter([str(q) if q else DEFAULT_QUEUE for q in reads.execute()])
        for i in range(len(cells)):
            total, sample = int(replies[2 * i]), [next(named) for _ in replies[2 * i + 1]]
            if total and sample:
                for q in out:
                    out[q] += total * sample.count(q) / len(sample) / window
        return out

    def all(self, also: tuple[str, ...] = (), window: float = 60.0) -> list[QueueDepth]:
        """Every known queue's figures (`yadtq queues`, GET /queues, the metrics, the dashboard)."""
        queues = self.known(also)
        sec, usec = self.r.time()
        now = sec + usec / 1e6
        rates = self.throughput(queues, now, window)
        depths, lags = self.depths(queues), self.lags(queues, now)
        dead = DeadLetterStore(self.r, self.space).counts(list(queues))
        return [QueueDepth(q, depths[q], lags[q], round(rates[q], 3), n) for q, n in zip(queues, dead, strict=True)]

"""Per named queue: depth, lag, throughput and dead letters, counted in Redis.

Not from the broker's offsets: the embedded broker's end offsets are wrong after batched
produces (docs/brokers.md). Each queue has an index of the ids submitted (or requeued) to it,
`Keys.queue_index`, written in the same script as the `queued` index; ids that finished stay
in it until pruned here (queue_prune.lua; a running one stays, as a retry brings it back), so:

* depth: the ids in both the queue's index and `queued` (ZINTERCARD: no ids cross the wire);
* lag: how long the oldest task still queued in it has waited;
* throughput: tasks finished per second over the last `window` seconds, estimated: the exact
  number finished (all queues) times the share of this queue among the newest finished ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from yadtq.config import DEFAULT_QUEUE
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
        for k in self.space.shards:
            named |= set(decoded_list(list(self.r.smembers(k.queues))))
        return [DEFAULT_QUEUE, *sorted(named - {DEFAULT_QUEUE})]

    def depth(self, queue: str) -> int:
        return sum(self._depth(k, queue) for k in self.space.shards)

    def _depth(self, k: Keys, queue: str) -> int:
        index, queued = k.queue_index(queue), k.status(Status.QUEUED)
        depth = int(self.r.zintercard(2, [index, queued]))
        if int(self.r.zcard(index)) > 2 * depth + PRUNE_SLACK:
            self._prune_on(k, queue)
        return depth

    def prune(self, queue: str) -> None:
        """Keeps in the queue's index only the ids queued or processing (queue_prune.lua)."""
        for k in self.space.shards:
            self._prune_on(k, queue)

    def _prune_on(self, k: Keys, queue: str) -> None:
        index = k.queue_index(queue)
        self._prune(keys=[index, k.status(Status.QUEUED), k.status(Status.PROCESSING),
                          f"{index}:scratch", k.status(Status.SCHEDULED)])

    def lag(self, queue: str, now: float) -> float | None:
        lags = [x for k in self.space.shards if (x := self._lag(k, queue, now)) is not None]
        return max(lags) if lags else None

    def _lag(self, k: Keys, queue: str, now: float) -> float | None:
        index = k.queue_index(queue)
        for attempt in range(2):
            rows: list[Any] = self.r.zrange(index, 0, LOOK - 1, withscores=True)
            if not rows:
                return None
            ids = [str(r[0]) for r in rows]
            still = self.r.zmscore(k.status(Status.QUEUED), ids)
            for (_, score), there in zip(rows, still, strict=True):
                if there is not None:
                    return max(0.0, now - float(score))
            if attempt == 0:
                self._prune_on(k, queue)  # the head was all gone: drop it and look once more
        return None

    def throughput(self, queues: list[str], now: float, window: float) -> dict[str, float]:
        """Finished per second in the last `window` seconds, per queue (success and failed)."""
        out = dict.fromkeys(queues, 0.0)
        for k in self.space.shards:
            for status in (Status.SUCCESS, Status.FAILED):
                key = k.status(status)
                total = int(self.r.zcount(key, now - window, "+inf"))
                if not total:
                    continue
                ids = decoded_list(self.r.zrevrangebyscore(key, "+inf", now - window, start=0, num=SAMPLE))
                pipe = self.r.pipeline(transaction=False)
                for tid in ids:
                    pipe.hget(k.task(tid), "queue")
                named = [str(q) if q else DEFAULT_QUEUE for q in pipe.execute()]
                if not named:
                    continue
                for q in out:
                    out[q] += total * named.count(q) / len(named) / window
        return out

    def all(self, also: tuple[str, ...] = (), window: float = 60.0) -> list[QueueDepth]:
        """Every known queue's figures (`yadtq queues`, GET /queues, the metrics, the dashboard)."""
        queues = self.known(also)
        sec, usec = self.r.time()
        now = sec + usec / 1e6
        rates = self.throughput(queues, now, window)
        dead = DeadLetterStore(self.r, self.space)
        return [QueueDepth(q, self.depth(q), self.lag(q, now), round(rates[q], 3), dead.count(q)) for q in queues]

"""Retention: finished records leave Redis when their time is up, with every index entry of theirs.

How long a finished record stays, first match wins:

1. the submit's own `result_ttl` (stored in the record by submit.lua),
2. the task's `@task(result_ttl=...)` (announced by the workers serving it, `announce_task_ttls`),
3. `Settings.result_ttl` (`YADTQ_RESULT_TTL`, a day by default).

A failed task is kept at least `Settings.failed_ttl` (`YADTQ_FAILED_TTL`, a week by default), and so
are dead letters. 0 anywhere means "forever" and wins over any number.

A Redis EXPIRE on the record alone would leave its id in the status indexes (what counts, listings,
searches and the dashboard read), so nothing here uses EXPIRE. A sweep, run by the workers and the
monitor as a housekeeping timer (at most one per `sweep_interval` farm-wide), does three bounded steps:

* index: reads each status index of finished tasks past a cursor (once per task), works out the
  record's expiry and writes it to the record (`expires_at`) and to one sorted set by time;
* expire: takes what is due from that set and deletes each record, its events list, its status
  index entry, its queue index entry and its expiry entry in one script (retention_expire.lua);
* trims the dead letters (of every queue) older than `failed_ttl`, and forgets workers gone for as long (their
  registry entry and per-worker counts).

What changed after a task was given its expiry (a new setting) applies to tasks finishing later.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yadtq.config import DEFAULT_QUEUE, Settings
from yadtq.errors import MessageError
from yadtq.store.connection import RedisClient, decoded_hash, decoded_list
from yadtq.store.dead_letters import DeadLetterStore
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.live_state import ALIVE
from yadtq.store.scripts import bind
from yadtq.task.status import FINAL_IN_ORDER, Status

BATCH = 1000  # index entries, expired records or dead letters per round trip


def check_result_ttl(value: Any) -> None:
    """Raises `MessageError` unless `value` is None or a finite number of seconds >= 0 (0: forever)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MessageError("result_ttl must be a number of seconds >= 0 (0 keeps the record forever)")


def longest(a: float, b: float) -> float:
    """The longer of two retentions, 0 being forever."""
    return 0.0 if a == 0 or b == 0 else max(a, b)


def keep_for(status: str, own: float | None, task_ttl: float | None, settings: Settings) -> float:
    """Seconds a record finished in `status` is kept (0: forever); see the module's rules."""
    keep = own if own is not None else task_ttl if task_ttl is not None else settings.result_ttl
    return longest(keep, settings.failed_ttl) if status == Status.FAILED else keep


@dataclass
class Swept:
    """What one sweep did."""

    indexed: int = 0  # finished tasks given their expiry
    deleted: int = 0  # records gone with their index entries
    dead_letters: int = 0
    workers: int = 0  # registry entries of workers gone for longer than failed_ttl

    def __bool__(self) -> bool:
        return bool(self.indexed or self.deleted or self.dead_letters or self.workers)


class Retention:
    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        # On a Redis Cluster each shard's records, indexes, expiry set and cursor are swept shard by shard.
        self.space = KeySpace.of(settings)
        self.keys = self.space.base
        self._index = bind(client, "retention_index")
        self._expire = bind(client, "retention_expire")

    def announce_task_ttls(self, ttls: Mapping[str, float | None]) -> None:
        """Notes each task's own `result_ttl` (None: it has none, the farm's setting applies)."""
        unset = [name for name, ttl in ttls.items() if ttl is None]
        pipe = self.r.pipeline(transaction=False)
        for name, ttl in ttls.items():
            if ttl is not None:
                pipe.hset(self.keys.task_ttls, name, float(ttl))
        if unset:
            pipe.hdel(self.keys.task_ttls, *unset)
        pipe.execute()

    def sweep_if_due(self, budget: float = 0.05) -> Swept | None:
        """Sweeps unless someone did within `sweep_interval` (one SET NX: the farm-wide timer)."""
        every = self.settings.sweep_interval
        if not self.r.set(self.keys.retention_lock, "1", nx=True, px=max(1, int(every * 1000))):
            return None
        return self.sweep(budget)

    def sweep(self, budget: float = 0.5) -> Swept:
        """One sweep, in rounds of `BATCH` until nothing is left or `budget` seconds are spent."""
        out = Swept()
        until = time.monotonic() + budget
        while True:
            sec, usec = self.r.time()
            now = sec + usec / 1e6
            indexed = due = 0
            for k in self.space.shards:  # one on one server
                shard_indexed, (shard_due, deleted) = self._index_finished(k, now), self._expire_due(k, now)
                indexed, due = max(indexed, shard_indexed), max(due, shard_due)
                out.indexed += shard_indexed
                out.deleted += deleted
            if (indexed < BATCH and due < BATCH) or time.monotonic() > until:
                break
        out.dead_letters = self._trim_dead_letters(now)
        out.workers = self._forget_gone_workers(time.time())
        return out

    # -- steps ------------------------------------------------------------------------
    def _index_finished(self, k: Keys, now: float) -> int:
        """Gives up to BATCH tasks of each final status that finished since the last pass their expiry."""
        task_ttls = {name: float(v) for name, v in decoded_hash(self.r.hgetall(self.keys.task_ttls)).items()}
        cursors = decoded_hash(self.r.hgetall(k.retention_cursor))
        most = 0  # new entries read from the busiest index
        for status in FINAL_IN_ORDER:
            index = k.status(status)
            low = float(cursors.get(status, "-inf"))
            rows = _page(self.r, index, low, now)
            if not rows:
                continue
            pipe = self.r.pipeline(transaction=False)
            for tid, _ in rows:
                pipe.hmget(k.task(tid), "status", "task", "result_ttl")
            keys: list[str] = [k.expiry, index]
            args: list[Any] = [status]
            ghosts: list[str] = []
            for (tid, score), (st, task, own) in zip(rows, pipe.execute(), strict=True):
                if st is None:
                    ghosts.append(tid)  # its record went without the sweep (purged, or an older EXPIRE)
                    continue
                if st != status:
                    continue  # moved on since the index was read: its next entry is read then
                keep = keep_for(status, float(own) if own not in (None, "") else None, task_ttls.get(str(task)),
                                self.settings)
                if keep > 0:
                    keys.append(k.task(tid))
                    args += [tid, repr(score), repr(score + keep)]
            if len(args) > 1:
                self._index(keys=keys, args=args)
            if ghosts:
                self.r.zrem(index, *ghosts)
            self.r.hset(k.retention_cursor, status, repr(rows[-1][1]))
            most = max(most, sum(1 for _, score in rows if score > low))
        return most

    def _expire_due(self, k: Keys, now: float) -> tuple[int, int]:
        """(entries due, records deleted) of up to BATCH due entries of the expiry set."""
        ids = decoded_list(self.r.zrangebyscore(k.expiry, "-inf", repr(now), start=0, num=BATCH))
        if not ids:
            return 0, 0
        keys: list[str] = [k.expiry, *(k.status(s) for s in FINAL_IN_ORDER)]
        pipe = self.r.pipeline(transaction=False)
        for tid in ids:
            pipe.hget(k.task(tid), "queue")
        # A finished record's queue no longer changes (a claim notes it): read before, used in the step.
        for tid, queue in zip(ids, pipe.execute(), strict=True):
            keys += [k.task(tid), k.events(tid), k.queue_index(str(queue or DEFAULT_QUEUE))]
        args: list[Any] = [len(FINAL_IN_ORDER), *FINAL_IN_ORDER, *ids]
        deleted = self._expire(keys=keys, args=args)
        return len(ids), len(deleted)

    def _trim_dead_letters(self, now: float) -> int:
        """Drops dead letters older than `failed_ttl` from each list's old end (it is newest first):
        the default queue's and every named queue's (`Keys.dlq_of`)."""
        keep = self.settings.failed_ttl
        if not keep:
            return 0
        named = [q for k in self.space.shards for q in decoded_list(list(self.r.smembers(k.queues)))]
        dead = DeadLetterStore(self.r, self.space)  # each queue's lists: the cluster-wide one and every shard's
        lists = {key for q in (None, *named) for key in dead.lists(q)}
        pipe = self.r.pipeline(transaction=False)
        for dlq in sorted(lists):
            for raw in decoded_list(self.r.lrange(dlq, -BATCH, -1)):
                if float(_json(raw).get("ts") or now) < now - keep:
                    pipe.lrem(dlq, -1, raw)  # by value, from the old end: a concurrent LPUSH moves nothing
        return sum(int(n) for n in pipe.execute())

    def _forget_gone_workers(self, now: float) -> int:
        """Workers not alive for longer than `failed_ttl` leave the registry and the per-worker counts."""
        keep = self.settings.failed_ttl
        if not keep:
            return 0
        gone = [name for name, raw in decoded_hash(self.r.hgetall(self.keys.workers)).items()
                if (info := _json(raw)).get("status") != ALIVE and float(info.get("since") or now) < now - keep]
        if gone:
            self.r.hdel(self.keys.workers, *gone)
            for k in self.space.shards:  # each shard's per-worker counts (one on one server)
                pipe = self.r.pipeline(transaction=False)
                for key in (k.done_by, k.failed_by):
                    pipe.hdel(key, *gone)
                pipe.execute()
        return len(gone)


def _page(client: RedisClient, index: str, low: float, now: float) -> list[tuple[str, float]]:
    """Up to BATCH (id, score) entries of `index` from score `low` (inclusive: entries at the cursor
    are read again, harmlessly) to `now`; past a full page of one score, the entries after it."""
    offset = 0
    while True:
        got: list[Any] = client.zrangebyscore(index, repr(low), repr(now), start=offset, num=BATCH, withscores=True)
        rows = [(str(m), float(s)) for m, s in got]
        if len(rows) == BATCH and rows[0][1] == rows[-1][1] == low:
            offset += BATCH  # a full page at the cursor's score: look further, not again
            continue
        return rows


def _json(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

"""Live state in Redis: heartbeats, the worker registry, failure history,
time series, dead letters and end-of-run markers.

Written by workers and the monitor; read by the CLI, dashboard and notebooks.
Every list is capped when written and read with bounded ranges.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from yadtq.config import Settings
from yadtq.store.batch import Batch
from yadtq.store.connection import RedisClient, WatchError, decoded_hash
from yadtq.store.dead_letters import DeadLetterStore
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.replies import decode_flag
from yadtq.store.scripts import bind
from yadtq.task.messages import Heartbeat
from yadtq.task.status import STATUSES

# A worker's status in the registry (not a task's: that is yadtq.task.status.Status).
ALIVE, DEAD, LEFT = "ALIVE", "DEAD", "LEFT"
FAILURES_KEPT = 1_000

class LiveState:
    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.space = KeySpace.of(settings)
        self.keys = self.space.base
        self._mark_end = bind(client, "mark_end")
        self.dead = DeadLetterStore(client, self.space)

    # -- heartbeats and the worker registry (written by the monitor) ------
    def record_heartbeat(self, hb: Heartbeat, pipe: Any = None) -> None:
        p = pipe if pipe is not None else self.r.pipeline(transaction=False)
        p.lpush(self.keys.heartbeats, hb.encode())
        p.ltrim(self.keys.heartbeats, 0, self.settings.heartbeat_history - 1)
        if pipe is None:
            p.execute()

    def heartbeats(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first."""
        return [json.loads(x) for x in self.r.lrange(self.keys.heartbeats, 0, limit - 1)]

    def put_worker(self, name: str, info: dict[str, Any], pipe: Any = None) -> None:
        (pipe if pipe is not None else self.r).hset(self.keys.workers, name, json.dumps(info))

    def workers(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in decoded_hash(self.r.hgetall(self.keys.workers)).items()}

    def mark_left(self, name: str, incarnation: str) -> bool:
        """A worker stopping cleanly marks its own registry entry LEFT, so a goodbye heartbeat
        lost with the broker (everything stopping at once) is not read as a death by the next
        monitor. Only its own incarnation's entry changes (WATCH/MULTI: atomic)."""
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.keys.workers)  # type: ignore[no-untyped-call]
                raw = pipe.hget(self.keys.workers, name)
                info = json.loads(raw) if raw else None
                if not info or info.get("incarnation") != incarnation:
                    return False
                info.update(status=LEFT, state="stopping", since=time.time())
                pipe.multi()
                pipe.hset(self.keys.workers, name, json.dumps(info))
                pipe.execute()
                return True
            except WatchError:
                return False  # the monitor wrote it meanwhile: its next beat decides

    def forget_worker(self, name: str) -> None:
        self.r.hdel(self.keys.workers, name)

    def _push_capped(self, key: str, entry: dict[str, Any], cap: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(key, json.dumps(entry, separators=(",", ":")))
        pipe.ltrim(key, 0, cap - 1)
        pipe.execute()

    def record_failure(self, entry: dict[str, Any]) -> None:
        self._push_capped(self.keys.failures, entry, FAILURES_KEPT)

    def failures(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first: worker, last_heartbeat, declared_at, tasks held."""
        return [json.loads(x) for x in self.r.lrange(self.keys.failures, 0, limit - 1)]

    def completions(self) -> tuple[dict[str, int], dict[str, int]]:
        """(successes, failures) per worker, as counted by the complete script."""
        _, done, failed = self._read(with_counts=False)
        return done, failed

    def snapshot(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """(tasks per status, successes per worker, failures per worker), read together: the monitor's
        sample. A step moves a task and counts it in one Lua call, so on one server, read in one MULTI,
        the figures agree (the successes counted add up to the `success` index, unless retention removed
        some). On a cluster: one round trip per primary, each shard's figures read at its own moment."""
        return self._read(with_counts=True)

    def _read(self, with_counts: bool) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        per_shard = 2 + (len(STATUSES) if with_counts else 0)
        if self.space.sharded:  # each shard's step counts its own: summed
            batch = Batch(self.r)
            for keys in self.space.shards:
                self._queue_reads(lambda key: batch.on(key), keys, with_counts)
            replies = batch.execute()
        else:
            pipe = self.r.pipeline(transaction=True)  # MULTI/EXEC: one moment
            self._queue_reads(lambda _key: pipe, self.keys, with_counts)
            replies = pipe.execute()
        counts: dict[str, int] = {s: 0 for s in STATUSES} if with_counts else {}
        done: dict[str, int] = {}
        failed: dict[str, int] = {}
        for at in range(0, len(replies), per_shard):
            got_done, got_failed, *cards = replies[at:at + per_shard]
            for name, n in got_done.items():
                done[name] = done.get(name, 0) + int(n)
            for name, n in got_failed.items():
                failed[name] = failed.get(name, 0) + int(n)
            for status, n in zip(counts, cards, strict=True):
                counts[status] += int(n)
        return counts, done, failed

    @staticmethod
    def _queue_reads(pipe_for: Callable[[str], Any], keys: Keys, with_counts: bool) -> None:
        """Queues one shard's reads: done_by, failed_by, then each status index's size (`with_counts`)."""
        pipe_for(keys.done_by).hgetall(keys.done_by)
        pipe_for(keys.failed_by).hgetall(keys.failed_by)
        for s in STATUSES if with_counts else ():
            pipe_for(keys.status(s)).zcard(keys.status(s))

    def batch(self) -> Any:
        """A pipeline (no transaction) to pass as `pipe` to record_heartbeat and put_worker;
        nothing is written until its `execute()`."""
        return self.r.pipeline(transaction=False)

    def monitor_position(self) -> int | None:
        """Where the monitor is in the heartbeat topic (None: never noted)."""
        raw = self.r.get(self.keys.monitor_offset)
        return None if raw is None else int(raw)

    def save_monitor_position(self, offset: int) -> None:
        self.r.set(self.keys.monitor_offset, offset)

    # -- time series (written by the monitor) ------------------------------
    def add_sample(self, sample: dict[str, Any]) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.keys.series, json.dumps(sample, separators=(",", ":")))
        pipe.ltrim(self.keys.series, -self.settings.series_points, -1)
        pipe.execute()

    def series(self, limit: int = 600) -> list[dict[str, Any]]:
        """The newest `limit` samples, oldest first."""
        return [json.loads(x) for x in self.r.lrange(self.keys.series, -limit, -1)]

    # -- dead letters (yadtq.store.dead_letters: on the task's shard, written by the step that fails it) --
    # Each named queue keeps its own lists (`Keys.dlq_of`; entry field "queue"), the default queue's as before.
    def add_dead_letter(self, entry: dict[str, Any]) -> None:
        self.dead.add(entry)

    def dead_letters(self, limit: int = 100, queue: str | None = None) -> list[dict[str, Any]]:
        return self.dead.read(limit, queue)

    def forget_dead_letters(self, task_id: str, queue: str | None = None) -> int:
        """Drops a task's dead letters (it was requeued, so it is not dead now; failing again
        adds a fresh entry); returns how many."""
        return self.dead.forget(task_id, queue)

    def dead_letter_count(self, queue: str | None = None) -> int:
        """How many dead letters a queue keeps (each list is capped at DLQ_KEPT)."""
        return self.dead.count(queue)

    # -- end of a run ------------------------------------------------------
    def mark_end(self, topic: str, end_id: str, partition: int, partitions: int) -> bool:
        """Notes that `partition` reached the end marker `end_id`.

        Returns True once every partition has: the run is over, and every
        worker and monitor that started before that moment stops.
        """
        return decode_flag(self._mark_end(keys=[self.keys.end(topic)],
                                          args=[end_id, partition, partitions, time.time()]))

    def end_completed_at(self, topic: str) -> float | None:
        raw = self.r.hget(self.keys.end(topic), "completed")
        return float(raw) if raw else None

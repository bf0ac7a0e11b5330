"""Finding and summarising tasks with bounded reads (shared by the HTTP API and the dashboard).

Tasks are found through the per-status indexes (sorted sets scored by when a
task entered its status), never by scanning the keyspace. A search walks the
indexes newest first, reads the records in batches and keeps those that match.
It stops after `limit` matches or after `budget` index entries, whichever comes
first, and hands back a cursor to go on from there. A narrow filter over a
million tasks therefore answers in bounded time with a partial page and a
cursor, instead of reading everything.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from yadtq.store.backend import Backend, TaskRecord
from yadtq.store.batch import Batch
from yadtq.store.keys import Keys
from yadtq.store.live_state import ALIVE, LiveState
from yadtq.task.status import FINAL_IN_ORDER, STATUSES, Status

MAX_LIMIT = 500
DEFAULT_BUDGET = 5_000
MAX_BUDGET = 20_000
_WALK = 500  # index entries read per ZREVRANGEBYSCORE
_TOP = chr(0x10FFFF)  # sorts after every task id: "(until, _TOP)" includes every task at `until`


class SearchError(ValueError):
    """A query or cursor that cannot be used (the API answers 400/422 with its message)."""


@dataclass(frozen=True)
class TaskQuery:
    """Which tasks to find. Times bound when a task entered its current status (epoch seconds)."""

    statuses: tuple[str, ...] = STATUSES
    task: str | None = None  # exact task name
    worker: str | None = None  # exact worker name
    error: str | None = None  # case-insensitive substring of the error text
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.statuses if s not in STATUSES]
        if unknown or not self.statuses:
            raise SearchError(f"unknown status {', '.join(unknown) or '(none given)'}; one of {', '.join(STATUSES)}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise SearchError(f"{name} must be a finite number of epoch seconds")

    @property
    def empty(self) -> bool:
        """A window that ends before it starts holds nothing."""
        return self.since is not None and self.until is not None and self.since > self.until

    def matches(self, rec: TaskRecord) -> bool:
        return self.matches_fields(rec.task, rec.worker, rec.error)

    def matches_fields(self, task: str | None, worker: str | None, error: str | None) -> bool:
        if self.task and task != self.task:
            return False
        if self.worker and (worker or None) != self.worker:
            return False
        return not self.error or self.error.lower() in (error or "").lower()


@dataclass(frozen=True)
class Cursor:
    """Where a search stopped: the last index entry it examined (score, task id)."""

    score: float
    task_id: str

    def encode(self) -> str:
        raw = json.dumps([self.score, self.task_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            score, task_id = json.loads(raw)
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not isinstance(task_id, str):
                raise ValueError("bad fields")
            if not math.isfinite(score):
                raise ValueError("score not finite")
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise SearchError("invalid cursor (pass back the next_cursor of a previous page)") from None
        return cls(float(score), task_id)


@dataclass
class SearchPage:
    tasks: list[TaskRecord]
    next_cursor: str | None  # None: nothing more matches in the window
    scanned: int  # index entries examined for this page


def search(backend: Backend, query: TaskQuery, limit: int = 50, cursor: str | None = None,
           budget: int = DEFAULT_BUDGET) -> SearchPage:
    """Tasks matching `query`, newest first (by when they entered their status).

    Reads at most `budget` index entries and their records; raises `SearchError`
    for a bad limit, budget or cursor.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit must be between 1 and {MAX_LIMIT}")
    if not 1 <= budget <= MAX_BUDGET:
        raise SearchError(f"budget must be between 1 and {MAX_BUDGET}")
    start: tuple[float, str] | None = None
    if query.empty:
        return SearchPage([], None, 0)
    if cursor:
        c = Cursor.decode(cursor)
        start = (c.score, c.task_id)
    elif query.until is not None:
        start = (query.until, _TOP)
    floor = "-inf" if query.since is None else repr(query.since)
    # one walk per status (and per shard on a Redis Cluster), merged newest first
    entries = heapq.merge(*_walks(backend, query.statuses, start, floor, budget, limit), reverse=True)
    found: list[TaskRecord] = []
    scanned = 0
    last: tuple[float, str, str] | None = None
    batch = min(limit, 100)
    while len(found) < limit and scanned < budget:
        chunk = list(itertools.islice(entries, min(batch, budget - scanned)))
        if not chunk:
            return SearchPage(found, None, scanned)
        # Filter on four fields first; read whole records only of the matches.
        reads = Batch(backend.r)
        for _, tid, _ in chunk:
            key = backend.space.for_task(tid).task(tid)
            reads.on(key).hmget(key, "status", "task", "worker", "error")
        hits: list[str] = []
        for entry, (status, task, worker, error) in zip(chunk, reads.execute(), strict=True):
            scanned += 1
            last = entry
            # A record that moved on since the index was read shows up under its new status instead.
            if status == entry[2] and query.matches_fields(task, worker, error):
                hits.append(entry[1])
                if len(found) + len(hits) == limit:
                    break
        found.extend(backend.get_many(hits))
        batch = min(batch * 2, 500)
    assert last is not None
    return SearchPage(found, Cursor(last[0], last[1]).encode(), scanned)


def _walks(backend: Backend, statuses: Sequence[str], start: tuple[float, str] | None, floor: str, budget: int,
           least: int = 1) -> list[Iterator[tuple[float, str, str]]]:
    """One `_walk` per status index (per status and shard on a Redis Cluster), their first pages read
    in one batch: one round trip per server, not one per shard. On a cluster each first page is cut
    to the shard's share of `budget` (at least `least`): a status's pages together hold about `budget`
    entries, as its one index does on one server (`_WALK`). A walk that runs past its first page
    (its shard holds more than its share of the newest) reads on by itself, `_WALK` at a time."""
    pairs = [(s, k) for s in statuses for k in backend.space.shards]
    shards = len(backend.space.shards)
    num = _WALK if shards == 1 else min(_WALK, max(least, -(-budget // shards)))
    hi = "+inf" if start is None else repr(start[0])
    first = Batch(backend.r)
    for s, k in pairs:
        first.on(k.status(s)).zrevrangebyscore(k.status(s), hi, floor, start=0, num=num, withscores=True)
    return [_walk(backend, s, start, floor, k, scored(got), num)
            for (s, k), got in zip(pairs, first.execute(), strict=True)]


def _walk(backend: Backend, status: str, start: tuple[float, str] | None, floor: str, keys: Keys,
          first: list[tuple[str, float]] | None = None, num: int = _WALK) -> Iterator[tuple[float, str, str]]:
    """(score, task id, status) of one status index (`keys`': a shard's on a cluster), strictly below
    `start`, descending; `first`: its first read of `num` entries, done already (`_walks`), then
    `_WALK` per read."""
    key = keys.status(status)
    pos = start
    while True:
        hi = "+inf" if pos is None else repr(pos[0])
        offset = 0
        while True:
            if first is not None:
                got, first = first, None
            else:
                got = scored(backend.r.zrevrangebyscore(key, hi, floor, start=offset, num=num, withscores=True))
            fresh = [(s, m) for m, s in got if pos is None or (s, m) < pos]
            if fresh or len(got) < num:
                break
            offset += num  # a run of equal scores, all at or above `pos`
        for score, member in fresh:
            yield score, member, status
        if len(got) < num:
            return
        pos, num = fresh[-1], _WALK


def scored(got: Any) -> list[tuple[str, float]]:
    """A ZRANGE ... WITHSCORES reply as typed (member, score) pairs."""
    return [(str(member), float(score)) for member, score in got]


# -- per-type figures ---------------------------------------------------------
@dataclass
class TypeStats:
    task: str
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    run_times: list[float] = field(default_factory=list, repr=False)
    waits: list[float] = field(default_factory=list, repr=False)

    @property
    def success_rate(self) -> float | None:
        judged = self.succeeded + self.failed
        return self.succeeded / judged if judged else None

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "finished": self.finished, "succeeded": self.succeeded, "failed": self.failed,
                "cancelled": self.cancelled, "success_rate": self.success_rate,
                "run_p50": percentile(self.run_times, 50), "run_p95": percentile(self.run_times, 95),
                "wait_p50": percentile(self.waits, 50), "wait_p95": percentile(self.waits, 95)}


@dataclass
class StatsReport:
    window: float  # seconds
    finished_in_window: dict[str, int]  # exact, per final status (ZCOUNT)
    sampled: int  # finished tasks read to compute the per-type figures
    types: list[TypeStats]

    @property
    def complete(self) -> bool:
        """True when every task finished in the window was read (figures are not a sample)."""
        return self.sampled >= sum(self.finished_in_window.values())

    def as_dict(self) -> dict[str, Any]:
        return {"window": self.window, "finished_in_window": self.finished_in_window, "sampled": self.sampled,
                "complete": self.complete, "types": [t.as_dict() for t in self.types]}


DEFAULT_SAMPLE = 2_000


def type_stats(backend: Backend, window: float, sample: int = DEFAULT_SAMPLE, now: float | None = None
               ) -> StatsReport:
    """Count, success rate, run time and queue wait p50/p95 per task type, over the last `window` seconds.

    The exact number finished in the window comes from the indexes; the per-type
    figures from the newest `sample` finished tasks (all of them when fewer).
    Run time is finished - started of the last attempt; queue wait is started - submitted.
    """
    if not window > 0 or not math.isfinite(window):
        raise SearchError("window must be a positive number of seconds")
    if not 1 <= sample <= MAX_BUDGET:
        raise SearchError(f"sample must be between 1 and {MAX_BUDGET}")
    now = time.time() if now is None else now
    since = now - window
    counts = Batch(backend.r)
    for s in FINAL_IN_ORDER:
        for k in backend.space.shards:
            counts.on(k.status(s)).zcount(k.status(s), repr(since), "+inf")
    n = len(backend.space.shards)
    got = [int(x) for x in counts.execute()]
    exact: dict[str, int] = {s: sum(got[i * n:(i + 1) * n]) for i, s in enumerate(FINAL_IN_ORDER)}
    # Only the five fields the figures need, for the newest `sample` entries of the window.
    walks = _walks(backend, FINAL_IN_ORDER, None, repr(since), sample)
    entries = list(itertools.islice(heapq.merge(*walks, reverse=True), sample))
    pipe = Batch(backend.r)
    for _, tid, _ in entries:
        key = backend.space.for_task(tid).task(tid)
        pipe.on(key).hmget(key, "task", "status", "submitted", "started", "finished")
    by_type: dict[str, TypeStats] = {}
    read = 0
    for (_, _, status), (task, current, submitted, started, finished) in zip(entries, pipe.execute(), strict=True):
        if task is None or current != status:
            continue  # expired, or moved on since the index was read
        read += 1
        st = by_type.setdefault(task, TypeStats(task))
        st.finished += 1
        if status == Status.SUCCESS:
            st.succeeded += 1
        elif status == Status.FAILED:
            st.failed += 1
        else:
            st.cancelled += 1
            continue
        if started and finished:
            st.run_times.append(max(0.0, float(finished) - float(started)))
        if started and submitted:
            st.waits.append(max(0.0, float(started) - float(submitted)))
    types = sorted(by_type.values(), key=lambda t: (-t.finished, t.task))
    return StatsReport(window, exact, read, types)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# -- workers and partitions ---------------------------------------------------
ENGINE_FIELDS = ("concurrency", "running", "partition_state")
WAIT_REASONS = {
    "retry_backoff": "waiting out a retry backoff",
    "key_busy": "an earlier task with the same key is running",
    "paused": "its partition is paused (buffer full or worker paused)",
    "no_slot": "wait for a slot (every slot of the worker is busy)",
    "claiming": "are being claimed (the worker's next step)",
    "rate limit": "wait for their task's rate limit",  # yadtq.worker.limits
    "concurrency limit": "wait for a free place under their task's max_concurrency",
}


def workers(live: LiveState, now: float | None = None, prune_after: float | None = None,
            heartbeats: int = 500) -> list[dict[str, Any]]:
    """The worker registry, one dict per worker, with the engine's fields of its latest heartbeat.

    `concurrency`, `running` and `partition_state` come from the registry when the
    monitor stores them, else from the newest `heartbeats` entries of the (capped)
    heartbeat log. Workers not ALIVE for more than `prune_after` seconds are left out.
    """
    now = time.time() if now is None else now
    registry = live.workers()
    missing = {n for n, w in registry.items() if any(f not in w for f in ENGINE_FIELDS)}
    latest: dict[str, dict[str, Any]] = {}
    if missing:
        for hb in live.heartbeats(heartbeats):
            name = hb.get("worker")
            if name in missing and name not in latest:
                latest[name] = hb
    out = []
    done, failed = live.completions()
    for name, w in sorted(registry.items()):
        if prune_after is not None and w.get("status") != ALIVE and now - w.get("since", now) > prune_after:
            continue
        info = {**w}
        for f in ENGINE_FIELDS:
            if f not in info:
                info[f] = latest.get(name, {}).get(f, [] if f != "concurrency" else None)
        info["name"] = name
        info["done"] = done.get(name, w.get("done", 0))
        info["failed"] = failed.get(name, w.get("failed", 0))
        running = list(info.get("running") or [])
        if not running and info.get("current_task"):
            running = [info["current_task"]]
        info["running"] = running
        # `running` holds the tasks claimed: those beyond the slots (yadtq/worker/claim_ahead.py) wait for one
        slots = info.get("concurrency")
        info["slots_in_use"] = min(len(running), slots) if isinstance(slots, int) else len(running)
        info["last_heartbeat_ago"] = max(0.0, now - float(w.get("last_heartbeat", now)))
        out.append(info)
    return out


def partitions(worker_list: Sequence[dict[str, Any]], end_offsets: dict[int, int] | None = None
               ) -> list[dict[str, Any]]:
    """One row per partition: owner, committed position, backlog, why tasks wait.

    With the topic's `end_offsets` (`yadtq.broker.backlog`), each row also says how many
    records wait in the broker past the committed position, and partitions no
    live worker owns are listed too.
    """
    rows: dict[int, dict[str, Any]] = {}
    for w in worker_list:
        if w.get("status") != ALIVE:
            continue
        states = {int(p["partition"]): p for p in w.get("partition_state") or [] if "partition" in p}
        for p in sorted(set(w.get("partitions") or []) | set(states)):
            st = states.get(int(p), {})
            waiting = {str(k): int(v) for k, v in (st.get("waiting") or {}).items() if int(v)}
            rows[int(p)] = {
                "partition": int(p), "owner": w["name"], "committed": st.get("committed"),
                "buffered": int(st.get("buffered") or 0), "running": int(st.get("running") or 0),
                "paused": bool(st.get("paused")), "waiting": waiting, "in_broker": None,
                "why": explain_waiting(waiting, bool(st.get("paused")), w.get("state")),
            }
    for p, end in (end_offsets or {}).items():
        row = rows.setdefault(p, {"partition": p, "owner": None, "committed": None, "buffered": 0, "running": 0,
                                  "paused": False, "waiting": {}, "in_broker": None,
                                  "why": "no live worker owns it"})
        if row["committed"] is not None:
            # Records past the committed position that the worker holds are buffered or running.
            row["in_broker"] = max(0, end - int(row["committed"]) - row["buffered"] - row["running"])
            if row["in_broker"] and row["why"] == "nothing waiting":
                row["why"] = "not read yet (the worker reads more as slots free up)"
    return [rows[p] for p in sorted(rows)]


def explain_waiting(waiting: dict[str, int], paused: bool, worker_state: str | None) -> str:
    """A sentence an operator can read: why this partition's tasks are not running."""
    parts = [f"{n} {WAIT_REASONS.get(reason, reason.replace('_', ' '))}" for reason, n in sorted(waiting.items())]
    if worker_state == "paused":
        parts.insert(0, "the worker is paused")
    elif paused and "paused" not in waiting:
        parts.insert(0, "paused: its buffer is full")
    return "; ".join(parts) if parts else "nothing waiting"


def why_queued(rec: TaskRecord, worker_list: Sequence[dict[str, Any]], history: Sequence[tuple[float, str]]
               ) -> str | None:
    """Why a queued task has not started yet, as far as the live state tells; None if it is not queued."""
    if rec.status != Status.QUEUED:
        return None
    alive = [w for w in worker_list if w.get("status") == ALIVE]
    if not alive:
        return "no worker is alive to run it"
    if history and history[-1][1].startswith("retry after error"):
        return "an attempt failed; it waits out its retry backoff before it runs again"
    if rec.partition is not None:
        for row in partitions(alive):
            if row["partition"] == rec.partition and row["why"] != "nothing waiting":
                return f"partition {rec.partition} ({row['owner']}): {row['why']}"
    if all(w.get("state") == "paused" for w in alive):
        return "every live worker is paused"
    return "waiting its turn in the broker (workers take tasks as slots free up)"

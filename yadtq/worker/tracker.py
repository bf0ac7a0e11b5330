"""Partition tracker: which records of each owned partition are waiting, running or done.

Pure bookkeeping, no I/O, owned by the loop thread. It answers three questions:

* what may start now: buffered tasks whose ordering key has fewer than its
  `key_slots` (default one) earlier unfinished tasks in the partition, and
  whose task id is not already running here; a control record only once
  everything before it in its partition has finished. A record held until a
  time (a start booked by its rate limit, a keyed retry's backoff, a claim
  held elsewhere) is not looked at before then: it waits in its partition's
  heap by due time, outside the records that `ready` scans on every turn of
  the loop, so a large held backlog costs the other tasks nothing;
* how far offsets may be committed: up to the lowest unfinished record;
* which partitions to pause: those holding `max_buffered` records past their
  lowest unfinished one, so memory stays bounded under any backlog. A paused
  partition is not fetched (`TaskSource.pause`); the records that the poll which
  filled it brought are kept rather than dropped and fetched again, so a
  partition holds at most `max_buffered` plus one poll (`hard_cap` in any case).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from yadtq.worker.priorities import PartitionOrder, rotate
from yadtq.worker.records import ControlWork, Record, TaskWork, Work

BUFFERED, HELD, STARTED, DONE = "buffered", "held", "started", "done"
COMPACT_AT = 16  # records no longer waiting met in one scan of a partition that make it drop them all


@dataclass
class Entry:
    """One record while its partition is owned here. Mutated only by the tracker."""

    record: Record
    work: Work
    state: str = BUFFERED
    not_before: float = 0.0  # monotonic time a held record may start again
    wait_reason: str = ""
    queued: bool = False  # in its partition's `waiting` deque (possibly as a stale item, see `ready`)

    @property
    def partition(self) -> int:
        return self.record.partition

    @property
    def offset(self) -> int:
        return self.record.offset

    @property
    def order_key(self) -> str | None:
        return self.work.order_key if isinstance(self.work, TaskWork) else None


@dataclass
class _Partition:
    next_offset: int | None = None  # records below this were seen already (dedupe after a seek)
    order: deque[int] = field(default_factory=deque)  # unfinished offsets, ascending
    entries: dict[int, Entry] = field(default_factory=dict)  # unfinished, by offset
    # Buffered, ascending; entries that left it (started, held) are dropped lazily by `ready`.
    waiting: deque[Entry] = field(default_factory=deque)
    # Held until a time: (not_before, sequence, entry), a min-heap; an item whose entry was held again
    # since (another not_before) or is no longer held is stale and skipped when popped.
    held: list[tuple[float, int, Entry]] = field(default_factory=list)
    keys: dict[str, deque[int]] = field(default_factory=dict)  # ordering key -> its unfinished offsets
    committed: int | None = None  # last offset committed (or told committable)
    paused: bool = False
    refetch: bool = False  # a polled record was dropped: fetching must go on from `next_offset`
    # A record came past `next_offset`: -1 while a seek back to it is pending, then the offset sought
    # (the first record fetched from there shows whether the offsets between exist).
    gap_check: int | None = None

    def low(self) -> int | None:
        """The lowest unfinished offset."""
        while self.order and self.order[0] not in self.entries:
            self.order.popleft()
        return self.order[0] if self.order else None


def _key_slots(entry: Entry) -> int:
    return entry.work.key_slots if isinstance(entry.work, TaskWork) else 1


def _first(offsets: deque[int], n: int) -> tuple[int, ...]:
    """The `n` lowest unfinished offsets of one ordering key."""
    return (offsets[0],) if n == 1 else tuple(itertools.islice(offsets, n))


def _compact(part: _Partition) -> None:
    """Drops from `waiting` the entries that left it (started or held past others still waiting)."""
    keep: deque[Entry] = deque()
    for e in part.waiting:
        if e.state == BUFFERED:
            keep.append(e)
        else:
            e.queued = False
    part.waiting = keep

def _release(part: _Partition, now: float) -> None:
    """Held entries now due go back to `waiting`, in offset order."""
    due: list[Entry] = []
    while part.held and part.held[0][0] <= now:
        until, _, entry = heapq.heappop(part.held)
        if entry.state != HELD or entry.not_before != until or part.entries.get(entry.offset) is not entry:
            continue  # stale: held again since, or dealt with
        entry.state = BUFFERED
        if not entry.queued:  # (still queued: it was held before it left `waiting`)
            entry.queued = True
            due.append(entry)
    if not due:
        return
    due.sort(key=lambda e: e.offset)
    waiting = part.waiting
    while waiting and waiting[0].state != BUFFERED:  # started since: makes the cheap cases below likelier
        waiting.popleft().queued = False
    if not waiting or due[0].offset > waiting[-1].offset:
        waiting.extend(due)
    elif due[-1].offset < waiting[0].offset:
        waiting.extendleft(reversed(due))
    else:
        part.waiting = deque(heapq.merge(waiting, due, key=lambda e: e.offset))

def _may_start(part: _Partition, entry: Entry, low: int | None,
               running_ids: set[str] | frozenset[str], taken_ids: set[str]) -> bool:
    if isinstance(entry.work, ControlWork):
        entry.wait_reason = "" if entry.offset == low else "end marker waits for earlier tasks"
        return entry.offset == low
    key = entry.order_key
    if key is not None and entry.offset not in _first(part.keys[key], _key_slots(entry)):
        entry.wait_reason = "busy key"
        return False
    if isinstance(entry.work, TaskWork) and (entry.work.task_id in running_ids or entry.work.task_id in taken_ids):
        entry.wait_reason = "same task id running"
        return False
    entry.wait_reason = ""
    return True


class PartitionTracker:
    def __init__(self, max_buffered: int, order: PartitionOrder | None = None) -> None:
        self.max_buffered = max_buffered
        # Records a paused partition still takes from polls made before its pause reached the source;
        # beyond it (a source that fetches it anyway) they are dropped and fetched again when it resumes.
        self.hard_cap = 2 * max_buffered
        self.order = order  # several queues: which partitions' tasks start first (yadtq.worker.priorities)
        self._parts: dict[int, _Partition] = {}
        self._rr = itertools.count()
        self._seq = itertools.count()  # tie-break of the held heaps (never compares entries)
        # Intake closed for every partition (a paused worker, Redis away): polled records are dropped.
        self.closed = False
        self._newly_paused: list[int] = []
        self._seek_back: list[int] = []

    # -- ownership -----------------------------------------------------------
    def assign(self, partition: int, start: int | None = None) -> None:
        """Starts tracking `partition`; `start` drops records below it (they were seen before a seek)."""
        self._parts[partition] = _Partition(next_offset=start)

    def revoke(self, partition: int) -> list[Entry]:
        """Stops tracking `partition`; returns its unfinished entries (started ones run on elsewhere)."""
        part = self._parts.pop(partition, None)
        return list(part.entries.values()) if part else []

    @property
    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def owns(self, partition: int) -> bool:
        return partition in self._parts

    # -- records in ------------------------------------------------------------
    def accepts(self, record: Record) -> bool:
        """Whether `add` would buffer this record: its partition is owned and taking records, and the
        record is the next one (not seen already, and nothing before it was dropped), or the first
        past a gap in the log that a fetch from the next offset confirmed."""
        part = self._parts.get(record.partition)
        if part is None or self.closed or len(part.entries) >= self.hard_cap:
            return False
        if part.next_offset is None or record.offset == part.next_offset:
            return True
        # A fetch that began at the next offset (after a seek back) found nothing before this record:
        # the offsets between are a gap in the log, not records missed.
        return record.offset > part.next_offset and part.gap_check == part.next_offset

    def dropped(self, record: Record) -> None:
        """A polled record not taken in: remember where fetching must go on from."""
        part = self._parts.get(record.partition)
        if part is None:
            return
        part.refetch = True
        if part.next_offset is None:
            part.next_offset = record.offset
        elif (record.offset > part.next_offset and not self.closed
              and part.gap_check is None and len(part.entries) < self.hard_cap):
            # Past the next offset with nothing dropped before it: either the consumer's position moved
            # on without us, or the log has no records there (a gap: Kafka allows them, and the embedded
            # broker leaves some after restarts). Fetch again from the next offset to tell which.
            part.gap_check = -1
            self._seek_back.append(record.partition)
        self._pause_if_full(record.partition, part)

    def _pause_if_full(self, partition: int, part: _Partition) -> None:
        if len(part.entries) >= self.max_buffered and not part.paused:
            part.paused = True
            self._newly_paused.append(partition)

    def add(self, record: Record, work: Work) -> Entry | None:
        """Buffers a polled record; None if `accepts` says no (the caller fetches it again after a seek
        to `next_offsets`, so dropping it loses nothing)."""
        if not self.accepts(record):
            return None
        part = self._parts[record.partition]
        part.next_offset = record.offset + 1
        part.gap_check = None
        entry = Entry(record, work)
        part.entries[record.offset] = entry
        part.order.append(record.offset)
        part.waiting.append(entry)
        entry.queued = True
        key = entry.order_key
        if key is not None:
            part.keys.setdefault(key, deque()).append(record.offset)
        self._pause_if_full(record.partition, part)
        return entry

    # -- what may start --------------------------------------------------------
    def ready(self, limit: int, now: float, running_ids: set[str] | frozenset[str]) -> list[Entry]:
        """Up to `limit` entries that may start now, fairly across partitions, each partition in offset order."""
        out: list[Entry] = []
        for part in self._parts.values():
            if part.held and part.held[0][0] <= now:
                _release(part, now)
        if not self._parts or limit <= 0:
            return out
        turn = next(self._rr)
        numbers = self.order.order(list(self._parts), turn) if self.order else rotate(list(self._parts), turn)
        taken_ids: set[str] = set()
        for part in (self._parts[p] for p in numbers):
            if len(out) >= limit:
                break
            low = part.low()
            waiting = part.waiting
            while waiting and waiting[0].state != BUFFERED:
                waiting.popleft().queued = False
            stale = 0
            for entry in waiting:
                if len(out) >= limit:
                    break
                if entry.state != BUFFERED:
                    stale += 1
                    continue
                if not _may_start(part, entry, low, running_ids, taken_ids):
                    continue
                out.append(entry)
                if isinstance(entry.work, TaskWork):
                    taken_ids.add(entry.work.task_id)
            if stale >= COMPACT_AT:
                _compact(part)
        return out

    def next_wakeup(self) -> float | None:
        """The earliest monotonic time a held record may start (or a little earlier: stale heap items)."""
        times = [p.held[0][0] for p in self._parts.values() if p.held]
        return min(times) if times else None

    # -- state changes -----------------------------------------------------------
    def start(self, entry: Entry) -> None:
        entry.state = STARTED
        if self.order is not None:
            self.order.started(entry.partition)

    def hold(self, entry: Entry, until: float, reason: str) -> None:
        """Back to waiting in its partition (a keyed retry, a start booked by a rate limit, a claim another
        worker holds) until the monotonic time `until`; `ready` does not look at it before then."""
        part = self._parts.get(entry.partition)
        if part is None or part.entries.get(entry.offset) is not entry:
            return
        entry.state, entry.not_before, entry.wait_reason = HELD, until, reason
        heapq.heappush(part.held, (until, next(self._seq), entry))

    def finish(self, entry: Entry) -> None:
        """The record is dealt with: its offset may be committed once all below it are."""
        part = self._parts.get(entry.partition)
        if part is None or part.entries.get(entry.offset) is not entry:
            return
        entry.state = DONE
        del part.entries[entry.offset]
        key = entry.order_key
        if key is not None:
            queue = part.keys[key]
            queue.remove(entry.offset)
            if not queue:
                del part.keys[key]

    # -- commits and flow control ------------------------------------------------
    def commit_point(self, partition: int) -> int | None:
        """The offset to commit (lowest unfinished, or one past the last seen), if it moved."""
        part = self._parts.get(partition)
        if part is None:
            return None
        low = part.low()
        point = low if low is not None else part.next_offset
        if point is None or point == part.committed:
            return None
        return point

    def committed(self, partition: int, offset: int) -> None:
        part = self._parts.get(partition)
        if part is not None:
            part.committed = offset

    def low_offsets(self) -> dict[int, int]:
        """Per partition, where a new owner must start: the lowest unfinished (or next) offset."""
        out = {}
        for p, part in self._parts.items():
            low = part.low()
            point = low if low is not None else part.next_offset
            if point is not None:
                out[p] = point
        return out

    def filled(self) -> list[int]:
        """Partitions paused since the last call: they buffer `max_buffered` records past their lowest
        unfinished one. A paused partition is not fetched (`TaskSource.pause`) until it drains."""
        pause = [p for p in self._newly_paused if p in self._parts]
        self._newly_paused = []
        return pause

    def drained(self) -> list[int]:
        """Paused partitions that drained to half of `max_buffered`, resumed now: fetching goes on,
        from their `refetch_offsets` if they dropped records."""
        resume = []
        for p, part in self._parts.items():
            if part.paused and len(part.entries) < self.max_buffered // 2:
                part.paused = False
                resume.append(p)
        return resume

    def seek_backs(self) -> dict[int, int]:
        """Partitions to fetch again from their next offset (a record came past it, see `dropped`),
        once per call: the caller seeks there before the next poll."""
        out = {}
        for p in self._seek_back:
            part = self._parts.get(p)
            if part is not None and part.next_offset is not None and part.gap_check == -1:
                part.gap_check = part.next_offset
                out[p] = part.next_offset
        self._seek_back = []
        return out

    def refetch_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """`next_offsets` of those of `partitions` that dropped a polled record since the last call:
        where fetching must go on from. The others' fetch position is already there (and a seek
        would throw away what the consumer fetched for them before their pause)."""
        out = {}
        for p in partitions:
            part = self._parts.get(p)
            if part is not None and part.refetch and part.next_offset is not None:
                part.refetch = False
                out[p] = part.next_offset
        return out

    def next_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """Per partition, the first offset not seen yet (where fetching must go on from)."""
        return {p: n for p in partitions if (part := self._parts.get(p)) and (n := part.next_offset) is not None}

    def crowded(self, partition: int) -> bool:
        """Whether `partition` buffers half of `max_buffered`: records that would wait long should
        wait elsewhere (a task over its rate, yadtq.worker.limits), or the partition is paused."""
        part = self._parts.get(partition)
        return part is not None and len(part.entries) >= self.max_buffered // 2

    def buffered(self) -> int:
        return sum(len(p.entries) for p in self._parts.values())

    def room(self, most: int) -> int:
        """How many records one poll may bring (at least one, at most `most`): the room left in the
        partitions that take records in. A worker whose buffers are full then fetches one record
        a poll, not `most` that it would drop and fetch again after the seek that resumes them.
        (A poll may still bring one partition more than its own room, as before: dropped, fetched
        again; by the total room, a partition crowded by held records never slows the others.)"""
        if self.closed:
            return 1
        if not self._parts:
            return most
        free = sum(self.max_buffered - n for p in self._parts.values()
                   if not p.paused and (n := len(p.entries)) < self.max_buffered)
        return max(1, min(most, free))

    def describe(self, slot_free: bool = True) -> list[dict[str, object]]:
        """Per partition: committed offset, buffered/running counts, paused, why tasks wait. A record
        with nothing holding it back waits for a slot (`no_slot`) when none is free (`slot_free`),
        else it is about to be claimed (`claiming`): every buffered record not running has a reason."""
        out: list[dict[str, object]] = []
        idle = "claiming" if slot_free else "no_slot"
        for p in sorted(self._parts):
            part = self._parts[p]
            reasons: dict[str, int] = {}
            running = 0
            for e in part.entries.values():
                if e.state == STARTED:
                    running += 1
                else:
                    reason = e.wait_reason or idle
                    reasons[reason] = reasons.get(reason, 0) + 1
            out.append({"partition": p, "committed": part.committed, "buffered": len(part.entries) - running,
                        "running": running, "paused": part.paused, "waiting": reasons})
        return out

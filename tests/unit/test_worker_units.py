"""The worker's bookkeeping without a worker: the partition tracker, record triage, claims ahead."""

from __future__ import annotations

import json
import time

from yadtq.task.registry import Registry
from yadtq.worker.claim_ahead import SHORT_RUN, WARM_UP, ClaimAhead
from yadtq.worker.records import Record, Rejected, TaskWork, triage
from yadtq.worker.tracker import PartitionTracker


def make_registry() -> Registry:
    reg = Registry()

    @reg.task("add")
    def add(x: int, y: int) -> int:
        return x + y

    return reg


def test_tracker_commit_point_is_the_lowest_unfinished_offset() -> None:
    reg = make_registry()
    t = PartitionTracker(max_buffered=10)
    t.assign(0)
    entries = []
    for i in range(4):
        rec = Record(0, i, None, json.dumps({"task-id": f"t{i}", "task": "add", "args": [1, 2]}).encode())
        entry = t.add(rec, triage(rec, reg, 10_000))
        assert entry is not None
        entries.append(entry)
    for e in t.ready(4, time.monotonic(), frozenset()):
        t.start(e)
    t.finish(entries[2])
    t.finish(entries[1])
    assert t.commit_point(0) == 0
    t.finish(entries[0])
    assert t.commit_point(0) == 3
    t.finish(entries[3])
    assert t.commit_point(0) == 4


def _offer(t: PartitionTracker, reg: Registry, offset: int) -> bool:
    """What the intake does with one polled record: buffer it, or drop it."""
    rec = Record(0, offset, None, json.dumps({"task-id": f"t{offset}", "task": "add", "args": [1, 2]}).encode())
    if t.accepts(rec):
        return t.add(rec, triage(rec, reg, 10_000)) is not None
    t.dropped(rec)
    return False


def test_a_gap_in_the_log_is_crossed_once_a_fetch_from_the_next_offset_confirms_it() -> None:
    reg = make_registry()
    t = PartitionTracker(max_buffered=10)
    t.assign(0, start=0)
    assert _offer(t, reg, 0)
    # Offsets 1-14 hold no records: the first fetch past 0 begins at 15.
    assert not _offer(t, reg, 15) and not _offer(t, reg, 16)  # the rest of that fetch waits too
    assert t.seek_backs() == {0: 1} and t.seek_backs() == {}  # asked once
    assert _offer(t, reg, 15) and _offer(t, reg, 16)  # fetched again from 1: the gap is real
    assert t.next_offsets([0]) == {0: 17}


def test_records_skipped_by_a_moved_position_are_fetched_again_not_lost() -> None:
    reg = make_registry()
    t = PartitionTracker(max_buffered=20)
    t.assign(0, start=0)
    assert _offer(t, reg, 0)
    assert not _offer(t, reg, 9)  # the consumer's position moved past 1-8 without the tracker
    assert t.seek_backs() == {0: 1}
    assert all(_offer(t, reg, i) for i in range(1, 10))  # 1-8 exist: read, none skipped
    assert not _offer(t, reg, 12)  # a later jump is checked again, not waved through
    assert t.seek_backs() == {0: 10}


def test_a_full_partition_is_paused_and_keeps_what_the_poll_that_filled_it_brought() -> None:
    """Filled, a partition is paused at the source; the rest of the poll that filled it is kept,
    not dropped to be fetched again, up to `hard_cap`. Only a partition that dropped a record is
    sought back when it resumes."""
    reg = make_registry()
    t = PartitionTracker(max_buffered=10)
    t.assign(0, start=0)
    t.assign(1, start=0)
    assert all(_offer(t, reg, i) for i in range(15))  # one poll: 5 past max_buffered, kept
    assert t.filled() == [0] and t.filled() == []  # paused once
    assert t.refetch_offsets([0]) == {}  # nothing dropped: fetching goes on where it stopped
    assert all(_offer(t, reg, i) for i in range(15, 20)) and not _offer(t, reg, 20)  # hard cap: 2 x 10
    assert t.refetch_offsets([0]) == {0: 20} and t.refetch_offsets([0]) == {}
    for e in t.ready(20, 0.0, frozenset()):
        t.start(e)
        t.finish(e)
    assert t.drained() == [0]  # drained below half: resumed
    assert _offer(t, reg, 20)


def test_triage_never_raises_on_hostile_bytes() -> None:
    reg = make_registry()
    for raw in [None, b"", b"{", b"[" * 200_000, b'{"task-id": 1}', b'{"control": "nope"}', b"\xff" * 10,
                b'{"task-id": "a", "task": "add", "args": ["x", 1]}', b"1e999999", b'"x"' * 1000]:
        work = triage(Record(0, 0, None, raw), reg, 100_000)
        assert isinstance(work, Rejected | TaskWork)


def test_a_poll_brings_no_more_than_the_room_left_in_the_partitions_taking_records() -> None:
    reg = make_registry()
    t = PartitionTracker(max_buffered=10)
    assert t.room(1000) == 1000  # nothing owned yet: whatever an assignment brings
    t.assign(0)
    t.assign(1)
    assert t.room(1000) == 20 and t.room(5) == 5
    for i in range(10):
        rec = Record(0, i, None, json.dumps({"task-id": f"t{i}", "task": "add", "args": [1, 2]}).encode())
        t.add(rec, triage(rec, reg, 10_000))
    assert t.room(1000) == 10  # partition 0 is full: only partition 1's room
    t.dropped(Record(0, 10, None, b"{}"))  # what came for it anyway: dropped, the partition paused
    assert t.room(1000) == 10
    for i in range(10):
        rec = Record(1, i, None, json.dumps({"task-id": f"u{i}", "task": "add", "args": [1, 2]}).encode())
        t.add(rec, triage(rec, reg, 10_000))
    assert t.room(1000) == 1  # all full: one record a poll keeps the consumer polled, not a batch to drop
    t.closed = True
    assert t.room(1000) == 1


def test_claim_ahead_only_after_a_warm_up_of_short_runs_and_never_past_a_long_one() -> None:
    ahead = ClaimAhead(8)
    for _ in range(WARM_UP - 1):
        ahead.ran(0.0002)
    assert ahead.extra() == 0, "claimed ahead before enough runs were seen"
    ahead.ran(0.0002)
    assert ahead.extra() == 8
    ahead.ran(0.2)  # one long run: off at once
    assert ahead.extra() == 0
    short_again = 0
    while ahead.extra() == 0:
        ahead.ran(0.0002)
        short_again += 1
    # The average holds a tenth of the long run, 0.02 s, and loses a tenth of itself per short one: back under
    # the limit after 14 (a 2 s run would take 36).
    assert short_again == 14, short_again
    assert ClaimAhead(0).extra() == 0


def test_claim_ahead_stays_off_for_runs_around_the_short_limit() -> None:
    ahead = ClaimAhead(8)
    for _ in range(100):
        ahead.ran(SHORT_RUN * 1.2)
    assert ahead.extra() == 0
    for _ in range(100):
        ahead.ran(SHORT_RUN * 0.8)
    assert ahead.extra() == 8

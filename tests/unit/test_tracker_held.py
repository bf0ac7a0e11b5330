"""Records held until a time (a start booked by a rate limit, a keyed retry's backoff): the tracker
keeps them out of the records it scans for what may start, gives them back in order when due,
and never lets the committed offset pass one of them."""

from __future__ import annotations

import json

import pytest

from yadtq.task.registry import Registry
from yadtq.worker import tracker
from yadtq.worker.records import Record, triage
from yadtq.worker.tracker import Entry, PartitionTracker

T = 1000.0  # a monotonic time: the tracker takes `now` from its caller, so no test sleeps


def make_registry() -> Registry:
    reg = Registry()

    @reg.task("add")
    def add(x: int, y: int) -> int:
        return x + y

    return reg


def fill(t: PartitionTracker, n: int, partition: int = 0, first: int = 0) -> list[Entry]:
    reg = make_registry()
    out = []
    for i in range(first, first + n):
        msg = {"task-id": f"p{partition}t{i}", "task": "add", "args": [1, 2]}
        rec = Record(partition, i, None, json.dumps(msg).encode())
        entry = t.add(rec, triage(rec, reg, 10_000))
        assert entry is not None
        out.append(entry)
    return out


def offsets(entries: list[Entry]) -> list[int]:
    return [e.offset for e in entries]


def test_a_held_record_is_not_ready_before_its_time_and_comes_back_when_due() -> None:
    t = PartitionTracker(max_buffered=100)
    t.assign(0)
    e = fill(t, 6)
    for x in t.ready(10, T, frozenset()):
        t.start(x)
    t.hold(e[0], T + 3, "rate limit")  # answered over its rate after its claim: held after starting
    t.hold(e[1], T + 1, "rate limit")
    t.hold(e[3], T + 2, "retry backoff")
    for x in (e[2], e[4], e[5]):
        t.finish(x)
    assert t.ready(10, T, frozenset()) == []
    assert t.next_wakeup() == T + 1
    assert offsets(t.ready(10, T + 1, frozenset())) == [1]
    assert offsets(t.ready(10, T + 2.5, frozenset())) == [1, 3]  # 1 was not started: still ready
    assert t.next_wakeup() == T + 3
    assert offsets(t.ready(10, T + 3, frozenset())) == [0, 1, 3]  # in offset order, not in due order
    assert t.next_wakeup() is None


def test_records_due_together_come_back_in_offset_order_among_those_waiting() -> None:
    t = PartitionTracker(max_buffered=100)
    t.assign(0)
    e = fill(t, 8)
    for x in t.ready(3, T, frozenset()):  # 0, 1, 2 start; 3..7 stay buffered
        t.start(x)
    t.hold(e[2], T + 1, "rate limit")
    t.hold(e[0], T + 1, "rate limit")
    t.finish(e[1])
    assert offsets(t.ready(10, T, frozenset())) == [3, 4, 5, 6, 7]
    for x in (e[3], e[4], e[6]):
        t.start(x)  # 5 and 7 still buffered: the released ones go in between and before them
    assert offsets(t.ready(10, T + 1, frozenset())) == [0, 2, 5, 7]


def test_a_record_held_before_its_claim_is_given_back_once() -> None:
    # A record gated by its task name's limit (yadtq.worker.limits) is held while still buffered.
    t = PartitionTracker(max_buffered=100)
    t.assign(0)
    e = fill(t, 3)
    assert offsets(t.ready(10, T, frozenset())) == [0, 1, 2]
    t.hold(e[1], T + 0.005, "rate limit")
    assert offsets(t.ready(10, T, frozenset())) == [0, 2]
    assert offsets(t.ready(10, T + 0.01, frozenset())) == [0, 1, 2]
    assert [x.offset for x in t._parts[0].waiting] == [0, 1, 2]  # no second copy of 1 in the scan


def test_a_record_held_again_waits_for_the_later_time() -> None:
    t = PartitionTracker(max_buffered=100)
    t.assign(0)
    e = fill(t, 1)
    t.start(e[0])
    t.hold(e[0], T + 1, "held by another worker")
    assert offsets(t.ready(10, T + 1, frozenset())) == [0]
    t.start(e[0])
    t.hold(e[0], T + 2, "rate limit")
    t.hold(e[0], T + 5, "rate limit")  # held again before the first time came (gated, then answered)
    assert t.ready(10, T + 2, frozenset()) == []
    assert offsets(t.ready(10, T + 5, frozenset())) == [0]


def test_a_held_record_holds_back_its_partitions_commit_until_it_is_done() -> None:
    t = PartitionTracker(max_buffered=100)
    t.assign(0)
    t.assign(1)
    e = fill(t, 5)
    other = fill(t, 2, partition=1)
    for x in t.ready(10, T, frozenset()):
        t.start(x)
    t.hold(e[1], T + 10, "rate limit")
    for x in (e[0], e[2], e[3], e[4], *other):
        t.finish(x)
    assert t.commit_point(0) == 1 and t.low_offsets() == {0: 1, 1: 2}
    assert t.commit_point(1) == 2  # the other partition is not held back
    [again] = t.ready(10, T + 10, frozenset())
    t.start(again)
    assert t.commit_point(0) == 1  # running: still not done
    t.finish(again)
    assert t.commit_point(0) == 5


def test_a_held_record_of_a_revoked_partition_is_gone_with_it() -> None:
    t = PartitionTracker(max_buffered=100)
    t.assign(0)
    e = fill(t, 2)
    t.start(e[0])
    t.hold(e[0], T + 1, "rate limit")
    assert offsets(t.revoke(0)) == [0, 1]
    t.assign(0, start=0)
    assert t.ready(10, T + 1, frozenset()) == [] and t.next_wakeup() is None


def test_the_ready_scan_does_not_look_at_held_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a saturated rate limit costs the other tasks: hundreds of records with booked starts
    # sit in the buffer, and `ready` runs on every turn of the loop.
    t = PartitionTracker(max_buffered=1000)
    t.assign(0)
    held = fill(t, 500)
    for x in t.ready(500, T, frozenset()):
        t.start(x)
    for i, x in enumerate(held):
        t.hold(x, T + 1 + i / 20, "rate limit")
    fill(t, 3, first=500)
    looked = []
    real = tracker._may_start

    def counting(*args: object) -> bool:
        looked.append(args[1])
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(tracker, "_may_start", counting)
    for _ in range(3):
        assert offsets(t.ready(11, T, frozenset())) == [500, 501, 502]
    assert len(looked) == 9
    assert t.next_wakeup() == T + 1


@pytest.mark.parametrize("slot_free, idle", [(False, "no_slot"), (True, "claiming")])
def test_every_buffered_record_not_running_is_described_with_why_it_waits(slot_free: bool, idle: str) -> None:
    """What the dashboard's partition table shows: a record held back has its reason; one nothing holds
    back waits for a slot when none is free, else it is about to be claimed (never "nothing waiting")."""
    t = PartitionTracker(max_buffered=100)
    t.assign(0)
    e = fill(t, 5)
    for x in t.ready(2, T, frozenset()):
        t.start(x)
    t.hold(e[2], T + 5, "rate limit")
    t.finish(e[0])
    [row] = t.describe(slot_free)
    assert (row["buffered"], row["running"]) == (3, 1)
    assert row["waiting"] == {"rate limit": 1, idle: 2}

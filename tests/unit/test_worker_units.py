"""The worker's bookkeeping without a worker: the partition tracker and record triage."""

from __future__ import annotations

import json
import time

from yadtq.task.registry import Registry
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


def test_triage_never_raises_on_hostile_bytes() -> None:
    reg = make_registry()
    for raw in [None, b"", b"{", b"[" * 200_000, b'{"task-id": 1}', b'{"control": "nope"}', b"\xff" * 10,
                b'{"task-id": "a", "task": "add", "args": ["x", 1]}', b"1e999999", b'"x"' * 1000]:
        work = triage(Record(0, 0, None, raw), reg, 100_000)
        assert isinstance(work, Rejected | TaskWork)

"""Named queues without processes: topic names, the --queues syntax, messages, task declarations and
the order a worker serving several queues starts their tasks in."""

from __future__ import annotations

import pytest

from yadtq.config import Settings
from yadtq.errors import ConfigError, MessageError
from yadtq.task.messages import TaskMessage, decode
from yadtq.task.queues import STRIDE, parse_queues
from yadtq.task.registry import Registry
from yadtq.task.signatures import spec_of
from yadtq.worker.priorities import StrictOrder, WeightedOrder, partition_order
from yadtq.worker.records import Record, TaskWork
from yadtq.worker.tracker import PartitionTracker


def test_each_queue_is_a_topic_and_the_default_keeps_todays() -> None:
    s = Settings(topic="jobs")
    assert s.topic_for(None) == s.topic_for("default") == "jobs"
    assert s.topic_for("email") == "jobs.email"
    assert s.dlq_topic_for(None) == s.dlq_topic == "jobs.dlq"
    assert s.dlq_topic_for("email") == "jobs.email.dlq"


def test_queue_lists_strict_weighted_and_refused() -> None:
    assert parse_queues("").names == ("default",)
    strict = parse_queues(" high, default ,low ")
    assert strict.names == ("high", "default", "low") and not strict.weighted
    weighted = parse_queues("high:5,default:3,low:1")
    assert weighted.weights == (5, 3, 1) and weighted.describe() == "high:5,default:3,low:1"
    for bad in ("high,high", "a:1,b", "a:0", "a:x", "dlq", "e.mail", "x" * 101):
        with pytest.raises(ConfigError):
            parse_queues(bad)
    plan = parse_queues("high,low")
    assert plan.split(STRIDE + 3) == ("low", 3) and plan.virtual(0, 2) == 2


def test_a_message_carries_its_queue_and_a_bad_one_is_refused() -> None:
    m = TaskMessage("t1", "add", (1, 2), queue="email")
    back = decode(m.encode(), 10_000)
    assert isinstance(back, TaskMessage) and back.queue == "email"
    assert b"queue" not in TaskMessage("t2", "add").encode()  # the default queue: the wire format of old
    with pytest.raises(MessageError, match="queue"):
        decode(b'{"task-id": "t3", "task": "add", "queue": "no such/queue"}', 10_000)


def test_a_task_declares_its_queue_and_workers_announce_it() -> None:
    reg = Registry()

    @reg.task(queue="email")
    def send(to: str) -> None: ...

    assert reg.get("send").queue == "email" and spec_of(reg.get("send"))["queue"] == "email"
    with pytest.raises(ConfigError):
        reg.task(queue="bad name")(lambda: None)


def _fill(tracker: PartitionTracker, partitions: list[int], per: int) -> None:
    for p in partitions:
        tracker.assign(p, 0)
        for offset in range(per):
            m = TaskMessage(f"{p}-{offset}", "add")
            rec = Record(p, offset, None, m.encode())
            tracker.add(rec, TaskWork(m, rec))


def _drain(tracker: PartitionTracker, picks: int, slots: int = 1) -> list[int]:
    """Starts `slots` ready tasks at a time, finishing them at once; the partitions started from."""
    out: list[int] = []
    for _ in range(picks):
        for e in tracker.ready(slots, 0.0, frozenset()):
            tracker.start(e)
            tracker.finish(e)
            out.append(e.partition)
    return out


def test_strict_order_starts_no_lower_task_while_a_higher_one_is_ready() -> None:
    tracker = PartitionTracker(100, StrictOrder(parse_queues("high,default,low")))
    low, high, default = [2 * STRIDE, 2 * STRIDE + 1], [0, 1], [STRIDE]
    _fill(tracker, low + high + default, 4)  # the low queue's records came first
    ranks = [p // STRIDE for p in _drain(tracker, 20, slots=3)]
    assert ranks == sorted(ranks) and len(ranks) == 20
    assert set(p for p in _drain(tracker, 1)) == set()  # drained
    # within one queue the partitions take turns
    tracker2 = PartitionTracker(100, StrictOrder(parse_queues("high,low")))
    _fill(tracker2, [0, 1], 4)
    assert _drain(tracker2, 4) in ([0, 1, 0, 1], [1, 0, 1, 0])


def test_weighted_order_shares_starts_by_weight_and_gives_idle_shares_away() -> None:
    plan = parse_queues("a:5,b:3,c:1")
    tracker = PartitionTracker(1000, WeightedOrder(plan))
    _fill(tracker, [0, STRIDE, 2 * STRIDE], 300)
    started = [p // STRIDE for p in _drain(tracker, 90)]
    assert [started.count(r) for r in range(3)] == [50, 30, 10]
    only_c = PartitionTracker(1000, WeightedOrder(plan))
    _fill(only_c, [2 * STRIDE], 10)
    assert len(_drain(only_c, 10)) == 10  # nothing else ready: c takes every slot
    assert partition_order(Settings()) is None and partition_order(Settings(queues="a,b")) is not None

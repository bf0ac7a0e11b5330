"""Where the Kafka source seeks a partition a rebalance gives back: its own lowest unfinished record
only when nobody else can have owned it in between; otherwise its committed offset (placement).

The listener is driven as kafka-python drives it (revoked / lost, then assigned), without a broker."""

from __future__ import annotations

from collections import deque

from kafka import TopicPartition

from yadtq.broker.assignor import StandbyAwareAssignor
from yadtq.config import Settings
from yadtq.worker.queue_topics import QueueTopics
from yadtq.worker.rewinds import Rewinds
from yadtq.worker.source import ASSIGNED, KafkaSource, _Listener

TOPIC = Settings().topic


class _Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))


def _source() -> tuple[KafkaSource, _Listener, _Consumer]:
    src = KafkaSource.__new__(KafkaSource)  # the rebalance bookkeeping only: no broker
    consumer = _Consumer()
    src.queues = QueueTopics(Settings())
    src.events = deque()
    src.rewinds = Rewinds()
    src._to_commit = {}
    src.assignor = StandbyAwareAssignor(False)
    src.consumer = consumer
    return src, _Listener(src), consumer


def _tps(*partitions: int) -> set[TopicPartition]:
    return {TopicPartition(TOPIC, p) for p in partitions}


def _assigned(src: KafkaSource) -> dict[int, int]:
    events = src.rebalances()
    return next(e.starts for e in reversed(events) if e.kind == ASSIGNED)


def test_a_partition_kept_across_a_rebalance_is_sought_back_to_its_lowest_unfinished_record() -> None:
    src, listener, consumer = _source()
    src.remember_lows({0: 10, 1: 20})
    listener.on_partitions_revoked(_tps(0, 1))
    listener.on_partitions_assigned(_tps(1))
    assert _assigned(src) == {1: 20} and consumer.seeks == [(1, 20)]


def test_a_partition_that_went_elsewhere_comes_back_at_its_commit() -> None:
    """Revoked, given to another worker for a generation, then back: this worker's low is stale
    (the other worker served and committed the partition meanwhile)."""
    src, listener, consumer = _source()
    src.remember_lows({0: 10, 1: 20})
    listener.on_partitions_revoked(_tps(0, 1))
    listener.on_partitions_assigned(_tps(1))  # partition 0 went to another worker
    src.rebalances()
    src.remember_lows({1: 25})
    listener.on_partitions_revoked(_tps(1))
    listener.on_partitions_assigned(_tps(0, 1))  # and comes back
    assert _assigned(src) == {1: 25}
    assert consumer.seeks == [(1, 20), (1, 25)]  # partition 0: placement seeks it to its commit


def test_an_evicted_worker_forgets_what_it_knew_of_its_partitions() -> None:
    """Evicted (a stopped process whose session expired, a fenced static member): its partitions were
    served elsewhere meanwhile. Neither its lows, nor an offset it asked to commit, nor the partitions
    its next join says it holds may come from before."""
    src, listener, consumer = _source()
    src.remember_lows({0: 10, 1: 20})
    src._to_commit.update({0: (10, ""), 1: (20, "")})
    src.assignor.owned = [(TOPIC, 0), (TOPIC, 1)]  # what its join metadata says it holds
    listener.on_partitions_lost(_tps(0, 1))
    src.remember_lows({0: 10, 1: 20})  # the loop's tracker has not applied the loss yet: ignored
    listener.on_partitions_assigned(_tps(0, 1))
    assert _assigned(src) == {} and consumer.seeks == []
    assert src._to_commit == {} and src.assignor.owned == []


def test_lows_remembered_before_a_loss_is_applied_never_rewind_a_later_revoke() -> None:
    """Lost, given back at once, and revoked again before the loop applied any of it: the loop's
    lows are still of the lost ownership and must not become a rewind point."""
    src, listener, consumer = _source()
    src.remember_lows({0: 10})
    listener.on_partitions_lost(_tps(0))
    listener.on_partitions_assigned(_tps(0))
    src.remember_lows({0: 10})  # stale: the tracker lags both events
    listener.on_partitions_revoked(_tps(0))
    listener.on_partitions_assigned(_tps(0))
    assert _assigned(src) == {} and consumer.seeks == []

"""The workaround for kafka-python parking a paused partition's records for good (yadtq.broker.paused_fetches),
on a consumer built the way kafka-python 3.0.12 holds that state, without a broker."""

from __future__ import annotations

from types import SimpleNamespace

from kafka import TopicPartition

from yadtq.broker.paused_fetches import drop_parked


class _Parked:
    def __init__(self) -> None:
        self.drained = False

    def drain(self) -> None:
        self.drained = True


def test_the_records_parked_for_a_resumed_or_revoked_partition_are_dropped_the_others_kept() -> None:
    t0, t1, t5 = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 5)
    parked = {t0: _Parked(), t1: _Parked(), t5: _Parked()}
    records = dict(parked)
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_paused_partition_records=records),
                               assignment=lambda: {t0, t1})
    assert drop_parked(consumer, [t0]) == 2  # t0 resumed, t5 no longer assigned
    assert set(records) == {t1}, "t1 is still paused: its records stay parked"
    assert parked[t0].drained and parked[t5].drained and not parked[t1].drained


def test_a_consumer_without_that_state_is_left_alone() -> None:
    assert drop_parked(SimpleNamespace(), [TopicPartition("t", 0)]) == 0
    assert drop_parked(SimpleNamespace(_fetcher=SimpleNamespace()), []) == 0

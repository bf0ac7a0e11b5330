"""Workaround for kafka-python 3.0.12 never fetching again a partition paused mid-fetch.

A poll that stops inside a partition's fetched records keeps them in line for the next poll. If
the partition is paused meanwhile, the next poll parks them (KAFKA-7548) and `resume` is meant
to put them back in line; kafka-python does so only while nothing is in line, but it keeps a
drained batch in line instead of clearing it, so after the first fetch that never holds. The
parked records never come back, and a partition with parked records is never fetched again: its
tasks would wait for ever (a rebalance that keeps the partition does not clear them either).

`drop_parked` drops the parked records of the partitions being resumed, and of partitions no
longer assigned. Nothing is lost: a partition's position is where the worker stopped taking its
records, so the next fetch brings them again; records are decoded as they are taken, so only
their bytes are fetched twice. It reads kafka-python's private fetcher state (pinned in
requirements.txt); without it, it does nothing. tests/system/test_worker_processes.py covers it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def drop_parked(consumer: Any, resuming: Collection[Any]) -> int:
    """Drops the records kafka-python parked for `resuming` (TopicPartitions) and for partitions
    no longer assigned; how many partitions' records were dropped."""
    parked = getattr(getattr(consumer, "_fetcher", None), "_paused_partition_records", None)
    if not isinstance(parked, dict) or not parked:
        return 0
    assigned = consumer.assignment()
    dropped = 0
    for tp in list(parked):
        if tp in resuming or tp not in assigned:
            parked.pop(tp).drain()
            dropped += 1
    return dropped

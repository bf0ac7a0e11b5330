"""In which order a worker serving several queues starts their ready tasks.

The tracker asks for an order of its partitions at every pick (`PartitionTracker.ready`)
and tells what started (`started`); the queue of a partition is its rank in the worker's
`QueuePlan` (`yadtq.task.queues`):

* `StrictOrder`: the queues in the order given; within one queue its partitions take turns.
  A task of a lower queue starts only when no task of a higher one is ready to start.
* `WeightedOrder`: the queue furthest behind its share (tasks started / weight) goes first,
  the others after it by the same measure; a queue with nothing ready leaves its turn to the
  next. Counts restart every `RESET_AFTER` x the weights' sum starts, so a queue idle for a
  long while catches up for at most that long, not for ever.

A worker of one queue has no order object: the tracker's plain turn-taking, as always.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from yadtq.config import Settings
from yadtq.task.queues import QueuePlan, parse_queues

RESET_AFTER = 20


class PartitionOrder(Protocol):
    def order(self, partitions: Sequence[int], turn: int) -> list[int]: ...
    def started(self, partition: int) -> None: ...


def rotate(partitions: Sequence[int], turn: int) -> list[int]:
    """Turn-taking: start from a different partition at every turn."""
    if not partitions:
        return []
    start = turn % len(partitions)
    return [*partitions[start:], *partitions[:start]]


class StrictOrder:
    def __init__(self, plan: QueuePlan) -> None:
        self.plan = plan

    def _by_rank(self, partitions: Sequence[int]) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for p in sorted(partitions):
            groups.setdefault(self.plan.rank_of(p), []).append(p)
        return groups

    def ranks(self) -> list[int]:
        return list(range(len(self.plan.names)))

    def order(self, partitions: Sequence[int], turn: int) -> list[int]:
        groups = self._by_rank(partitions)
        return [p for rank in self.ranks() for p in rotate(groups.get(rank, []), turn)]

    def started(self, partition: int) -> None:
        pass


class WeightedOrder(StrictOrder):
    def __init__(self, plan: QueuePlan) -> None:
        super().__init__(plan)
        self.weights = plan.weights or tuple(1 for _ in plan.names)
        self.counts = [0] * len(plan.names)

    def ranks(self) -> list[int]:
        return sorted(range(len(self.weights)), key=lambda r: (self.counts[r] / self.weights[r], r))

    def started(self, partition: int) -> None:
        self.counts[self.plan.rank_of(partition)] += 1
        if sum(self.counts) >= RESET_AFTER * sum(self.weights):
            self.counts = [0] * len(self.counts)


def partition_order(settings: Settings) -> PartitionOrder | None:
    """The order for the queues `settings.queues` names; None for one queue (plain turn-taking)."""
    plan = parse_queues(settings.queues)
    if len(plan.names) == 1:
        return None
    return WeightedOrder(plan) if plan.weighted else StrictOrder(plan)

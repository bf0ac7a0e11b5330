"""The topics of the queues one worker serves, and the engine's partition numbers for them.

The engine (tracker, placement, commits) knows a partition by one integer; a worker serving
several queues numbers partition p of the queue ranked r as `r * STRIDE + p`
(`yadtq.task.queues.QueuePlan`). Only the Kafka source translates, here.
"""

from __future__ import annotations

from kafka import TopicPartition

from yadtq.config import Settings
from yadtq.errors import ConfigError
from yadtq.task.queues import STRIDE, parse_queues


class QueueTopics:
    def __init__(self, settings: Settings) -> None:
        self.plan = parse_queues(settings.queues)
        self.topics = tuple(settings.topic_for(q) for q in self.plan.names)
        self._rank = {t: r for r, t in enumerate(self.topics)}
        if settings.partitions >= STRIDE:
            raise ConfigError(f"partitions must be below {STRIDE} (one block of numbers per queue)")

    def serves(self, topic: str) -> bool:
        return topic in self._rank

    def number(self, tp: TopicPartition) -> int:
        """The engine's number of a topic partition."""
        return self.plan.virtual(self._rank[tp.topic], tp.partition)

    def tp(self, number: int) -> TopicPartition:
        """The topic partition of an engine number."""
        return TopicPartition(self.topics[number // STRIDE], number % STRIDE)

    def topic_of(self, number: int) -> str:
        return self.topics[number // STRIDE]

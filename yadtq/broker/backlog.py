"""Records waiting in the broker, per partition: its end offset minus the group's committed position.

The heartbeats tell what a worker has read (buffered, running, waiting); what
it has not read yet is only in the broker. One consumer without a group asks
for the end offsets (no records are fetched); it is made on first use and kept.

Only for Apache Kafka (`YADTQ_BROKER=kafka`): the embedded broker counts a
batch of records as one offset in its ListOffsets answer (docs/brokers.md), so
`for_settings` gives None there and the pages leave the column empty.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from yadtq.broker.clients import make_consumer
from yadtq.config import Settings
from yadtq.errors import ConnectError


def for_settings(settings: Settings) -> Backlog | None:
    """A `Backlog` where end offsets can be trusted, else None."""
    return Backlog(settings) if settings.broker == "kafka" else None


class Backlog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: Any = None
        self._lock = threading.Lock()

    def end_offsets(self) -> dict[int, int] | None:
        """Partition -> end offset of the tasks topic; None when the broker does not answer."""
        with self._lock:
            try:
                if self._consumer is None:
                    self._consumer = make_consumer(self.settings, None)
                found = self._consumer.partitions_for_topic(self.settings.topic) or set()
                tps = [TopicPartition(self.settings.topic, p) for p in sorted(found)]
                got = self._consumer.end_offsets(tps) if tps else {}
                return {tp.partition: int(offset) for tp, offset in got.items()}
            except (ConnectError, KafkaError, OSError):
                self.close_locked()
                return None

    def close_locked(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(KafkaError, OSError):  # closing a consumer of a broker that is gone
                self._consumer.close()
            self._consumer = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()

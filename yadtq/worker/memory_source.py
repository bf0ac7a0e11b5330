"""An in-memory task source for tests of the engine: partitions, commits, pauses, rebalances
(the `TaskSource` protocol of yadtq.worker.source, without a broker)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from yadtq.task.messages import key_partition
from yadtq.worker.records import Record
from yadtq.worker.source import ASSIGNED, REVOKED, Committed, Rebalance


class MemorySource:
    """An in-memory topic for unit tests of the engine: partitions, commits, pauses, rebalances."""

    def __init__(self, partitions: int, topic: str = "tasks") -> None:
        self.topic = topic
        self.connected = True
        self.log: list[list[Record]] = [[] for _ in range(partitions)]
        self.position: dict[int, int] = {}
        self.committed_offsets: dict[int, int] = {}
        self.committed_tags: dict[int, str] = {}
        self.retained: dict[int, int] = {}  # positions of partitions revoked from this member
        self.published: dict[str, list[tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]]] = {}
        self.events: deque[Rebalance] = deque()
        self.lock = threading.Lock()
        self.delivered = 0  # records handed to the worker by `poll`, fetched again ones included
        self.paused: set[int] = set()  # kept across a revoke and assign, as kafka-python does
        self._rr = 0

    # -- the test's side -----------------------------------------------------------
    def append(self, value: bytes, key: bytes | None = None, partition: int | None = None,
               headers: Sequence[tuple[str, bytes]] = ()) -> Record:
        with self.lock:
            if partition is None:
                parts = list(range(len(self.log)))
                partition = key_partition(key.decode(), parts) if key else self._next_partition()
            rec = Record(partition, len(self.log[partition]), key, value, tuple(headers))
            self.log[partition].append(rec)
            return rec

    def _next_partition(self) -> int:
        self._rr += 1
        return self._rr % len(self.log)

    def assign(self, partitions: Sequence[int]) -> None:
        """The group gives these partitions: from their committed offsets, or, as kafka-python
        does, from the position this member had when one comes back to it."""
        with self.lock:
            for p in partitions:
                self.position[p] = self.retained.pop(p, self.committed_offsets.get(p, 0))
            self.events.append(Rebalance(ASSIGNED, tuple(partitions)))

    def revoke(self, partitions: Sequence[int]) -> None:
        with self.lock:
            for p in partitions:
                if p in self.position:
                    self.retained[p] = self.position.pop(p)
            self.events.append(Rebalance(REVOKED, tuple(partitions)))

    def lose_log(self) -> None:
        """A memory-only broker restarted: every record and commit is gone (positions held stay)."""
        with self.lock:
            self.log = [[] for _ in self.log]
            self.committed_offsets.clear()
            self.committed_tags.clear()

    # -- the worker's side ------------------------------------------------------------
    def poll(self, timeout: float, max_records: int | None = None) -> list[Record]:
        out: list[Record] = []
        with self.lock:
            for p, pos in self.position.items():
                if p in self.paused:
                    continue
                got = self.log[p][pos:pos + min(500, (max_records or 500) - len(out))]
                self.position[p] = pos + len(got)
                self.delivered += len(got)
                out.extend(got)
        if not out and timeout:
            time.sleep(min(timeout, 0.005))
        return out

    def rebalances(self) -> list[Rebalance]:
        out = []
        with self.lock:
            while self.events:
                out.append(self.events.popleft())
        return out

    def commit(self, offsets: dict[int, int], log_epoch: str = "") -> bool:
        with self.lock:
            for p, o in offsets.items():
                if p in self.position:
                    self.committed_offsets[p] = o
                    self.committed_tags[p] = log_epoch
        return True

    def committed(self, partitions: Sequence[int]) -> dict[int, Committed | None]:
        with self.lock:
            return {p: Committed(self.committed_offsets[p], self.committed_tags.get(p, ""))
                    if p in self.committed_offsets else None for p in partitions if p in self.position}

    def beginnings(self, partitions: Sequence[int]) -> dict[int, int]:
        with self.lock:
            return {p: 0 for p in partitions if p in self.position}

    def restart_log(self, partitions: Sequence[int]) -> None:
        with self.lock:
            for p in partitions:
                if p in self.position:
                    self.position[p] = 0

    def seek(self, positions: dict[int, int]) -> None:
        with self.lock:
            for p, o in positions.items():
                if p in self.position:
                    self.position[p] = o

    def pause(self, partitions: Sequence[int]) -> None:
        with self.lock:
            self.paused.update(p for p in partitions if p in self.position)

    def resume(self, partitions: Sequence[int]) -> None:
        with self.lock:
            self.paused.difference_update(partitions)

    def publish(self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        if topic == self.topic:
            self.append(value, key)
        else:
            with self.lock:
                self.published.setdefault(topic, []).append((key, value, tuple(headers)))

    def flush(self) -> bool:
        return True

    def partition_count(self) -> int:
        return len(self.log)

    def remember_lows(self, lows: dict[int, int]) -> None:
        pass

    def close(self) -> None:
        pass

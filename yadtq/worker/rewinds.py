"""Where a partition that a rebalance gives back to this worker is read from.

kafka-python keeps the fetch position of a partition that a rebalance revokes and then gives back
to the same member, past the records the loop dropped at revoke (its buffer of that partition is
emptied). Such a partition is sought back to this worker's own lowest unfinished record.

That record is right only while nobody else owned the partition in between: when the assignment
that follows the revocation gives it back. A partition that went to another member, or that was
lost (this member was evicted: a session that expired while the process was stopped, another
process fenced its static member), may have been served and committed elsewhere meanwhile, and
this worker's view of it is stale: a record it dropped as dealt with (a run whose outcome was
discarded because another worker's claim had replaced its own) may be unfinished there, and
seeking past it would leave its task queued for ever. Such a partition starts from its committed
offset (placement.py) when it comes back; the claim skips whatever finished.

The rebalance listener runs on kafka-python's thread and the loop on its own: both go through
`lock`, and the loop's lows count only once it has applied every rebalance reported to it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class Rewinds:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._lows: dict[int, int] = {}  # per owned partition, the loop's lowest unfinished record
        self._points: dict[int, int] = {}  # revoked partitions: where to seek if the next assignment gives them back

    def remember(self, lows: dict[int, int]) -> None:
        """The loop's lows, from a tracker that has applied every rebalance (caller holds `lock`)."""
        self._lows = dict(lows)

    def revoked(self, partitions: Iterable[int]) -> None:
        """Revoked while this member still belongs to the group: they may come back at the next assignment."""
        for p in partitions:
            if p in self._lows:
                self._points[p] = self._lows.pop(p)

    def lost(self, partitions: Iterable[int]) -> None:
        """Evicted: whatever this worker knew of them is stale."""
        for p in partitions:
            self._lows.pop(p, None)
            self._points.pop(p, None)

    def assigned(self, partitions: Iterable[int]) -> dict[int, int]:
        """Where to seek the partitions this assignment gives back; every other revoked partition went
        elsewhere, so its point is forgotten (it would be stale by the time it came back)."""
        starts = {p: self._points[p] for p in partitions if p in self._points}
        self._points.clear()
        return starts

    def forget(self) -> None:
        """The broker lost its log: positions in it mean nothing."""
        self._lows.clear()
        self._points.clear()

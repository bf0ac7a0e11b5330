"""Where newly assigned partitions are read from, and whether the broker's log can be trusted.

A memory-only broker that restarts loses its log: offsets committed in the old log mean
nothing in the new one. The monitor notes a new broker epoch in Redis when that happens;
commits carry the epoch they were made in, and a commit is trusted only when it was made
in the log the broker holds now. What is not trusted is read from the start: that costs
only time, since the claim skips whatever already finished.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from yadtq.store.broker_epoch import EpochRecords
from yadtq.store.connection import RedisClient
from yadtq.store.keys import Keys
from yadtq.worker.middleware import Hooks
from yadtq.worker.outages import RedisOutages
from yadtq.worker.source import Committed, TaskSource
from yadtq.worker.tracker import PartitionTracker

log = logging.getLogger(__name__)


class Placement:
    def __init__(self, client: RedisClient, keys: Keys, source: TaskSource, tracker: PartitionTracker,
                 outages: RedisOutages, hooks: Hooks) -> None:
        self.redis = client
        self.keys = keys
        self.source = source
        self.tracker = tracker
        self.outages = outages
        self.hooks = hooks
        self.epoch: str | None = None  # the broker epoch in Redis (None: none noted there)
        self.epoch_read = False  # whether `epoch` was read at all (Redis may be away at the start)

    def place(self, partitions: Sequence[int], starts: dict[int, int]) -> None:
        """Sets where each newly assigned partition is read from, explicitly.

        kafka-python keeps the fetch position of a partition that comes back to this member,
        whatever happened meanwhile: after a memory-only broker lost its log that position lies
        past the new log's end, and the embedded broker answers such fetches with nothing, so the
        partition would never be served. Partitions sought back to this worker's own lowest
        unfinished record (`starts`) stay there; the others start at their commit when it was made
        in the log the broker holds now (its noted epoch is the one known here), else at the log's
        start (nothing committed, or a commit of a lost log: starting there would skip the tasks
        published again below it). The claim skips whatever already finished."""
        todo = [p for p in partitions if p not in starts]
        if not todo:
            return
        if not self.epoch_read:
            self.check_broker_epoch()
        try:
            committed = self.source.committed(todo)
            fresh = [p for p in todo if not self.trusted(committed.get(p))]
            places = {p: c.offset for p, c in committed.items() if c is not None and p not in fresh}
            places.update(self.source.beginnings(fresh))
        except Exception as exc:  # the broker went away again: from the start costs only time
            log.warning("could not read where partitions %s start (%s): reading them from the start", list(todo), exc)
            self.source.seek(dict.fromkeys(todo, 0))  # below a log's start, the consumer resets to it
            return
        # A commit tagged with another epoch was made in a log the broker lost. One with no tag says
        # nothing either way: the embedded broker keeps no commit metadata, so there every partition
        # that changes hands is read from its start (the claim skips what finished), which is routine.
        stale = [p for p in fresh if (c := committed.get(p)) is not None and c.epoch]
        if stale:
            log.warning("partitions %s were committed in a log the broker lost: reading them from the start", stale)
            self.hooks.notice("partitions_reread", partitions=stale, reason="commit of a lost log")
        untagged = [p for p in fresh if (c := committed.get(p)) is not None and not c.epoch]
        if untagged:
            log.info("partitions %s: the broker keeps no epoch with its commits; reading them from the start",
                     untagged)
        for p, offset in places.items():
            self.tracker.assign(p, start=offset)
        self.source.seek(places)

    def trusted(self, commit: Committed | None) -> bool:
        """A commit is trusted when it was made in the log the broker holds now, by its noted epoch
        (with the epoch unreadable, none is: reading from the start costs only time)."""
        if commit is None or not self.epoch_read:
            return False
        return self.epoch is None or commit.epoch == self.epoch

    def check_broker_epoch(self) -> None:
        """The monitor notes a new broker epoch when a memory-only broker restarted and lost its
        log: positions in the old log mean nothing, so read every owned partition from the start."""
        unread = object()
        read = self.outages.call(self._read_epoch, unread)
        if read is unread:
            return
        epoch = read if isinstance(read, str) else None
        # A first read after the start could not read it: positions held since may be of any log.
        changed = (self.epoch is not None and epoch != self.epoch) if self.epoch_read else bool(self.tracker.partitions)
        self.epoch, self.epoch_read = epoch, True
        if changed and epoch is not None:
            parts = self.tracker.partitions
            # Only worth a warning when positions held here meant something in the lost log.
            (log.warning if parts else log.info)(
                "the broker lost its log (epoch now %s): reading partitions %s from the start", epoch, parts)
            self.hooks.notice("broker_log_restarted", partitions=parts, epoch=epoch)
            for p in parts:
                self.tracker.assign(p, start=0)  # a new log starts at offset 0
            self.source.restart_log(parts)

    def _read_epoch(self) -> str | None:
        return EpochRecords(self.redis, self.keys).stored()

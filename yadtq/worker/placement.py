"""Where newly assigned partitions are read from, and whether the broker's log can be trusted.

A memory-only broker that restarts loses its log: offsets committed in the old log mean
nothing in the new one. The monitor notes a new broker epoch in Redis when that happens;
commits carry the epoch they were made in, and a commit is trusted only when it was made
in the log the broker holds now. What is not trusted is read from the start: that costs
only time, since the claim skips whatever already finished.

At its start a worker asks the broker's own epoch marker (`EpochProbe`) rather than trusting
Redis alone: after a restart of the whole stack (`make run` again: the embedded broker starts
empty, Redis kept its data) Redis still notes the old broker's epoch until the monitor notes the
new one, and a worker that took the old one for the log it reads would then see a "restart"
under its feet. Later, only a change of what Redis notes tells of a restart; Redis catching up
with the epoch known here is none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from kafka.errors import KafkaError

from yadtq.broker.clients import EpochProbe
from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable
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
                 outages: RedisOutages, hooks: Hooks, probe: Callable[[], str | None] | None = None) -> None:
        """`probe`: the epoch of the log the broker holds now, asked of the broker itself (None when it
        cannot tell); without one, the epoch Redis notes is taken for it."""
        self.redis = client
        self.keys = keys
        self.source = source
        self.tracker = tracker
        self.outages = outages
        self.hooks = hooks
        self.probe = probe
        self.epoch: str | None = None  # the epoch of the log read here (None: none noted anywhere)
        self.epoch_read = False  # whether `epoch` was read at all (Redis may be away at the start)
        self.noted: str | None = None  # the epoch Redis noted at the last read

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
        noted = read if isinstance(read, str) else None
        if not self.epoch_read:
            self._first_epoch(noted)
            return
        if noted == self.noted:
            return
        self.noted = noted
        if noted is None or noted == self.epoch:  # Redis forgot it, or caught up with the log read here
            return
        self.epoch = noted
        self._restart_log(log.warning if self.tracker.partitions else log.info)

    def _first_epoch(self, noted: str | None) -> None:
        """The first read: the broker's own marker says which log it holds; what Redis notes may still
        be the epoch of a broker that has since restarted (the monitor notes the new one shortly)."""
        probed = self.probe() if self.probe is not None else None
        self.epoch, self.noted, self.epoch_read = probed or noted, noted, True
        if self.tracker.partitions and self.epoch is not None:
            # Redis was away at the start: positions held since may be of any log.
            self._restart_log(log.warning)
        elif noted is not None and probed is not None and probed != noted:
            log.info("the broker's log starts afresh (epoch %s; Redis noted %s, a previous broker's):"
                     " the monitor publishes again what that one lost", probed, noted)

    def _restart_log(self, say: Callable[..., None]) -> None:
        """Reads every owned partition from the start of the log of `self.epoch`."""
        parts = self.tracker.partitions
        # Only worth a warning when positions held here meant something in the lost log.
        say("the broker lost its log (epoch now %s): reading partitions %s from the start", self.epoch, parts)
        self.hooks.notice("broker_log_restarted", partitions=parts, epoch=self.epoch)
        for p in parts:
            self.tracker.assign(p, start=0)  # a new log starts at offset 0
        self.source.restart_log(parts)

    def _read_epoch(self) -> str | None:
        return EpochRecords(self.redis, self.keys).stored()


def broker_epoch_probe(settings: Settings) -> Callable[[], str | None]:
    """Asks the broker's own epoch marker (putting it when there is none yet: every reader takes the
    first one, so a monitor writing at the same time agrees); None when the broker does not answer."""
    def probe() -> str | None:
        marker = EpochProbe(settings)
        try:
            return marker.current()
        except (KafkaError, BrokerUnavailable) as exc:
            log.info("could not read the broker's epoch marker (%s): going by the epoch Redis notes", exc)
            return None
        finally:
            marker.close()
    return probe

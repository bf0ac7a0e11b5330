"""Putting lost work back on the topic, each task once (run by the monitor).

Two cases, and no other: a backlog is never republished merely for being old.

* The broker restarted and lost its log (a memory-only broker; detected by its
  epoch marker, `EpochProbe`): every `queued` task whose message went to an
  earlier epoch (each record notes the epoch of its latest message), and every
  `processing` task whose lease has lapsed, is published again at once. For a
  while after the restart the scan repeats, since claims made before it may
  still be released back to `queued` (a worker stopping, a retry) with no
  message left to run them; after that window it repeats every
  `LATE_RESCAN_EVERY` seconds for as long as a task of the lost log is still
  running.
* A `processing` task whose lease lapsed more than `requeue_stale_after`
  seconds ago: its worker died and no other worker reclaimed it from a
  redelivered message, so its message is gone. It is requeued (its fence moves
  on, the cut-off run is counted) and published again. Not while the worker
  incarnation that claimed it is alive by its heartbeats (which come through the
  broker): then its lease lapsed because Redis was away for longer than the
  lease (a Sentinel election that split its vote took 21 s), its run goes on,
  and its outcome is stored when Redis returns; requeued, it would run twice.

A duplicate message is harmless: the claim skips a finished task and never
runs one twice at once. Tasks that could not be published (the broker went
away again) are retried on the next rounds.
"""

from __future__ import annotations

import logging
import time

from kafka.errors import KafkaError

from yadtq.broker.clients import EpochProbe, ensure_topic
from yadtq.broker.session import longest_session_s
from yadtq.client.client import YADTQ
from yadtq.errors import BrokerUnavailable, YADTQError
from yadtq.logs import EventLog
from yadtq.store.broker_epoch import EpochRecords
from yadtq.store.live_state import ALIVE
from yadtq.task.status import Status

log = logging.getLogger(__name__)
BATCH = 1000
LATE_RESCAN_EVERY = 10.0  # seconds, after the first window


class Recovery:
    def __init__(self, client: YADTQ, events: EventLog) -> None:
        self.client = client
        self.settings = client.settings
        self.backend = client.backend
        self.events = events
        self.epochs = EpochRecords(client.redis, client.backend.keys, client.backend.space)
        self._unsent: set[str] = set()
        self._next_lapsed = 0.0
        self._epoch: str | None = None
        self._rescan_until = 0.0
        self._next_rescan = 0.0

    def broker_restarted(self, probe: EpochProbe) -> bool:
        """True when the broker's epoch differs from the one Redis remembers (it lost its log).

        The first epoch ever seen is remembered and is no restart. Raises
        `BrokerUnavailable`/`KafkaError` when the broker does not answer.
        """
        current = probe.read()
        stored = self.epochs.stored()
        if current is not None and current == stored:
            return False
        if current is None:
            current = probe.write()
        self.epochs.remember(current)
        self._epoch = current
        if stored is None:
            log.info("broker epoch %s", current)
            return False
        self.events.emit("broker_restarted", previous_epoch=stored, epoch=current)
        return True

    def after_restart(self) -> None:
        """Publishes again what the broker lost: queued tasks of older epochs and lapsed claims."""
        s = self.settings
        for queue in self.client.queue_stats.known():  # every queue's topic went with the broker
            ensure_topic(s, s.topic_for(queue), s.partitions)
        lapsed = self._requeue(self.backend.lapsed(0.0, limit=100_000))
        self._publish(_unique(lapsed + self._lost_queued()), "broker_restart")
        # Claims of the old epoch settle within a lease, a rebalance and a death's notice.
        window = 2 * (s.lease + longest_session_s(s)) + s.dead_after
        self._rescan_until = time.monotonic() + window

    def tick(self, now: float) -> None:
        """Every few seconds: requeue long-lapsed claims, retry what could not be sent,
        and shortly after a restart, look again for queued tasks of the lost epoch."""
        if self._rescan_until and time.monotonic() >= self._next_rescan:
            late = time.monotonic() > self._rescan_until
            # Past the window only tasks still running from a lost log can come back to `queued`
            # without a message (a keyed retry, a claim given back): look now and then until none is left.
            self._next_rescan = time.monotonic() + (LATE_RESCAN_EVERY if late else 2.0)
            lapsed = self._requeue(self.backend.lapsed(0.0, limit=BATCH))
            self._publish(_unique(lapsed + self._lost_queued()), "broker_restart")
            if late and not self._running_from_lost_log():
                self._rescan_until = 0.0
        if now < self._next_lapsed:
            return
        self._next_lapsed = now + max(1.0, min(self.settings.lease / 2, 5.0))
        if self._unsent:
            ids, self._unsent = sorted(self._unsent), set()
            self._publish(ids, "retry")
        grace = self.settings.requeue_stale_after
        if grace:
            ids = self._requeue(self.backend.lapsed(grace, limit=BATCH, spare=self._alive_incarnations()))
            if ids:
                log.warning("requeued %d task(s) whose worker died over %gs ago and whose message is gone",
                            len(ids), grace)
                self._publish(ids, "lease_lapsed")

    def _alive_incarnations(self) -> set[str]:
        """The worker incarnations the registry says are alive (the monitor's `judge` ran just before)."""
        return {str(info.get("incarnation")) for info in self.client.live.workers().values()
                if info.get("status") == ALIVE}

    def _running_from_lost_log(self) -> bool:
        """Whether a `processing` task's message went to an earlier broker epoch."""
        ids = self.backend.list_ids(Status.PROCESSING, limit=BATCH, newest_first=False)
        return any(epoch != self._epoch for epoch in self.epochs.of_tasks(ids))

    def _lost_queued(self) -> list[str]:
        """Ids `queued` whose latest message went to an earlier broker epoch."""
        out: list[str] = []
        ids = self.backend.all_ids(Status.QUEUED, page=BATCH)
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            for tid, (status, epoch) in zip(chunk, self.epochs.status_and_epoch(chunk), strict=True):
                if status == Status.QUEUED and epoch != self._epoch:
                    out.append(tid)
        return out

    def _requeue(self, ids: list[str]) -> list[str]:
        """Moves lapsed `processing` tasks back to `queued` (counting the cut-off run)."""
        done = []
        for tid in ids:
            try:
                self.backend.reset_to_queued(tid, fresh=False)
            except YADTQError:
                continue  # finished, renewed or reclaimed meanwhile
            done.append(tid)
        return done

    def _publish(self, ids: list[str], reason: str) -> None:
        sent: list[str] = []
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            records = [r for r in self.backend.get_many(chunk) if r.status == Status.QUEUED]
            try:
                self.client.send_again([r.message() for r in records])  # each to its own queue and key
            except (BrokerUnavailable, KafkaError) as exc:
                log.warning("could not publish %d task(s) again (%s); retrying", len(ids) - len(sent), exc)
                self._unsent.update(ids[start:])
                break
            sent += [r.task_id for r in records]
            if self._epoch is not None:  # where their messages are now
                self.epochs.note([r.task_id for r in records], self._epoch)
        if sent:
            self.events.emit("tasks_requeued", reason=reason, count=len(sent), tasks=sent[:100])
            # After a restart of the memory-only broker this is routine (each `make run`): not a warning.
            (log.info if reason == "broker_restart" else log.warning)("published %d task(s) again (%s)",
                                                                       len(sent), reason)


def _unique(ids: list[str]) -> list[str]:
    """`ids` without repeats, in order (a lapsed claim just requeued is also a lost queued task)."""
    return list(dict.fromkeys(ids))

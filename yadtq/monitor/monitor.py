"""The monitor: heartbeats in, worker registry, failure history and time series out.

A worker is ALIVE while its heartbeats come, DEAD once the newest arrived more
than `dead_after` seconds ago (ALIVE again if it returns), LEFT when it said
goodbye (a "stopping" heartbeat, or the worker marking itself LEFT). Each DEAD
declaration is kept in the failure history with the worker's last heartbeat
and the tasks it held. Samples of queue depth and per-worker completions are
written every `series_interval`, so the dashboard has history even when nobody
was watching.

One clock: liveness is judged by when the monitor *received* each heartbeat,
never by the worker's own timestamp, so workers on skewed hosts are judged
alike. The monitor declares no one dead for a silence it could not hear: while
the broker is unreachable, for `dead_after` after it returns or restarts, after
the monitor itself stalled, and for heartbeats it read but could not yet store
(Redis down; they are kept and stored when Redis returns).

Periodic tasks: the monitor runs a scheduler (`yadtq.client.scheduler`) beside the workers'.

Recovery (see `Recovery`): after a restart of a memory-only broker the tasks
whose messages went with it are published again, each once; a `processing`
task whose lease lapsed long ago (its worker died and its message is gone) is
requeued. A backlog is never republished merely for being old.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import TopicPartition
from kafka.errors import KafkaError

from yadtq.broker.clients import EpochProbe, check_reachable, ensure_topic, make_consumer
from yadtq.broker.unsent_fetches import forget_unsent_fetch
from yadtq.client.client import YADTQ
from yadtq.client.scheduler import Scheduler
from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable, MessageError
from yadtq.logs import EventLog
from yadtq.monitor.recovery import Recovery
from yadtq.redaction import redact_url
from yadtq.store.connection import REDIS_UNAVAILABLE
from yadtq.store.live_state import ALIVE, DEAD, LEFT
from yadtq.store.retention import Retention
from yadtq.store.schedules import ScheduleStore
from yadtq.task.messages import Heartbeat, TaskMessage
from yadtq.task.status import Status

log = logging.getLogger(__name__)
T = TypeVar("T")
# Heartbeats held while Redis is down (the newest kept): a few minutes of a large farm.
PENDING_CAP = 20_000
PROBE_MAX = 5.0


@dataclass(frozen=True)
class Beat:
    """A heartbeat as the monitor received it. `live` is False for history read at start-up
    (sent before this monitor ran): it is logged, and a goodbye in it counts, nothing else."""

    hb: Heartbeat
    received: float
    live: bool


class Monitor:
    def __init__(self, settings: Settings, events: EventLog | None = None) -> None:
        self.settings = settings
        self.events = events or EventLog(settings, "monitor")
        self.started_at = time.time()
        self._stop = threading.Event()
        self._next_sample = 0.0
        self._pending: list[Beat] = []
        self._offset: int | None = None  # next heartbeat offset to store once the beats are stored
        self._live_from = 0  # heartbeat offsets below this were sent before the monitor started
        # Nobody is declared dead for a silence before this moment (monitor start, broker return...).
        self._visible_since = time.time()
        self._broker_lost: float | None = None
        self._redis_lost: float | None = None
        self._next_probe = 0.0
        self._probe_every = 1.0
        self._next_epoch = 0.0
        self._last_round = time.monotonic()

    # -- connecting ----------------------------------------------------------
    def connect(self) -> None:
        """Connects to Redis (raises `BackendUnavailable`), then waits for the broker as long as it takes."""
        s = self.settings
        # Republishing is retried on the next scan, so the monitor's own loop never waits a whole
        # publish_timeout on a broker that is away (it must keep judging heartbeats).
        self.client = YADTQ(s.replace(publish_timeout=min(s.publish_timeout, 2 * s.connect_timeout)),
                            create_topic=False)
        self.backend = self.client.backend
        self.retention = Retention(self.client.redis, s)
        self.live = self.client.live
        self.recovery = Recovery(self.client, self.events)
        # Periodic tasks: the monitor fires due slots too (beside every worker; each slot fires once).
        self.scheduler = Scheduler(ScheduleStore(self.client.redis, s), self._send_scheduled, who="monitor",
                                   events=self.events)
        self._next_schedule = 0.0
        self.epoch = EpochProbe(s)
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._connect_broker()
                break
            except (BrokerUnavailable, KafkaError) as exc:
                self._lost_broker(str(exc))
                self._stop.wait(delay)
                delay = min(delay * 2, PROBE_MAX)
        if self._broker_lost is not None:
            self._restored_broker()
        self.events.emit("connected", kafka=redact_url(s.kafka_bootstrap), topic=s.heartbeat_topic)

    def _connect_broker(self) -> None:
        s = self.settings
        ensure_topic(s, s.heartbeat_topic, 1)
        # No consumer group: a group rejoin waits out the previous member's session
        # (docs/brokers.md). The monitor reads the one partition itself and keeps
        # its position in Redis, so a restart neither waits nor replays.
        self.consumer = make_consumer(s, None, fetch_max_wait_ms=100)
        self.partition = TopicPartition(s.heartbeat_topic, 0)
        self.consumer.assign([self.partition])
        end = self.consumer.end_offsets([self.partition]).get(self.partition, 0)
        position = self.live.monitor_position()
        if position is not None and position <= end:
            self.consumer.seek(self.partition, position)
            self._live_from = end
        else:  # first start, or a new heartbeat topic (the broker lost the old one)
            self.consumer.seek_to_beginning(self.partition)
            self._live_from = 0 if position is not None else end

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())

    # -- the loop ------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.round()
                except Exception:  # an error no handler foresaw must not end the farm's only judge
                    log.exception("monitor round failed; going on")
                    self.events.emit("monitor_error", error=traceback.format_exc(limit=3)[-2000:])
                    self._stop.wait(1.0)
        finally:
            self.consumer.close()
            self.epoch.close()
            self.events.close()
            self.client.close()

    def round(self) -> None:
        """One round: watch the broker, read heartbeats, store and judge them."""
        now = time.time()
        if time.monotonic() - self._last_round > max(2 * self.settings.heartbeat_interval, 3.0):
            self._visible_since = now  # the monitor itself stalled: it heard nothing meanwhile
        self._last_round = time.monotonic()
        self._watch_broker(now)
        if self._broker_lost is None:
            self._read_heartbeats()
        else:
            self._stop.wait(0.25)
        self._io(lambda: self.tick(time.time()))
        self.events.flush()

    def _read_heartbeats(self) -> None:
        try:
            batches = self.consumer.poll(timeout_ms=250, max_records=1000)
        except KafkaError as exc:
            forget_unsent_fetch(self.consumer, exc)  # else the heartbeats' partition is never fetched again
            self._lost_broker(str(exc))
            return
        received = time.time()
        for records in batches.values():
            for rec in records:
                self._offset = rec.offset + 1
                try:
                    hb = Heartbeat.decode(rec.value)
                except MessageError as exc:
                    log.warning("ignored a bad heartbeat: %s", exc)
                    continue
                self._pending.append(Beat(hb, received, rec.offset >= self._live_from))
        if len(self._pending) > PENDING_CAP:
            del self._pending[:len(self._pending) - PENDING_CAP]

    def tick(self, now: float) -> None:
        """Store the pending heartbeats, judge liveness, sample, recover, prune, check for `end`."""
        if self._pending:
            self.record(self._pending)
            self._pending = []
            if self._offset is not None:
                self.live.save_monitor_position(self._offset)
        if self._redis_lost is not None:
            self.events.emit("connection_restored", service="redis", after=round(now - self._redis_lost, 3))
            log.info("Redis is back after %.1fs", now - self._redis_lost)
            self._redis_lost = None
        self.judge(now)
        if now >= self._next_sample:
            self.sample(now)
            self._next_sample = now + self.settings.series_interval
        if self._broker_lost is None:
            self.recovery.tick(now)
            if now >= self._next_schedule:
                self._next_schedule = now + self.scheduler.tick()
        self.retention.sweep_if_due(budget=0.5)  # finished records whose time is up, with their index entries
        completed = self.live.end_completed_at(self.settings.topic)
        if completed and completed > self.started_at:
            log.info("end of run: stopping the monitor")
            self.stop()

    def _send_scheduled(self, messages: Sequence[TaskMessage]) -> bool:
        self.client.send_again(messages)
        return True

    # -- heartbeats and liveness ----------------------------------------------
    def record(self, beats: list[Beat]) -> None:
        known = self.live.workers()
        pipe = self.live.batch()
        latest: dict[str, Beat] = {}
        for beat in beats:  # in offset order: the last one of each worker is its newest
            self.live.record_heartbeat(beat.hb, pipe)
            latest[beat.hb.worker] = beat
        for name, beat in latest.items():
            hb, before = beat.hb, known.get(name, {})
            if hb.state == "stopping":
                state = LEFT
            elif not beat.live and not self._started_just_before(beat, before):
                continue  # history from before this monitor ran: the registry knows better
            elif before.get("status") == LEFT and before.get("incarnation") == hb.incarnation:
                continue  # a beat that crossed its own goodbye
            else:
                state = ALIVE
            if before.get("status") != state:
                event = {ALIVE: "worker_alive", LEFT: "worker_left"}[state]
                self.events.emit(event, worker=name, worker_pid=hb.pid, host=hb.host)
                log.info("worker %s is %s", name, state)
            self.live.put_worker(name, {
                "name": name, "status": state, "host": hb.host, "pid": hb.pid,
                "incarnation": hb.incarnation, "state": hb.state,
                "last_heartbeat": beat.received if beat.live else before.get("last_heartbeat", beat.received),
                "sent_at": hb.ts, "current_task": hb.current_task or (hb.running[0] if hb.running else None),
                "running": list(hb.running), "partitions": list(hb.partitions),
                "done": hb.done, "failed": hb.failed,
                "since": before.get("since", beat.received) if before.get("status") == state else beat.received,
            }, pipe)
        pipe.execute()

    def _started_just_before(self, beat: Beat, before: dict[str, Any]) -> bool:
        """A beat from before this monitor ran that still counts: a worker the registry has never
        seen (a new incarnation) that sent it within one heartbeat interval. Under `make run` the
        monitor starts beside the workers and may connect after their first beat; their next one
        comes after their group join: without it the registry would not say they are joining."""
        return before.get("incarnation") != beat.hb.incarnation and \
            abs(beat.received - beat.hb.ts) < self.settings.heartbeat_interval

    def judge(self, now: float) -> None:
        if self._broker_lost is not None:
            return  # silence is all there is to hear: no verdicts until the broker returns
        for name, info in self.live.workers().items():
            if info.get("status") != ALIVE:
                continue
            heard = max(float(info.get("last_heartbeat") or 0.0), self._visible_since)
            if now - heard <= self.settings.dead_after:
                continue
            held = self.tasks_held(name, [info.get("current_task"), *info.get("running", [])])
            info.update(status=DEAD, since=now)
            self.live.put_worker(name, info)
            self.live.record_failure({"worker": name, "host": info.get("host"), "pid": info.get("pid"),
                                      "last_heartbeat": info.get("last_heartbeat"), "declared_at": now,
                                      "tasks": held, "partitions": info.get("partitions", [])})
            self.events.emit("worker_died", worker=name, worker_pid=info.get("pid"),
                             last_heartbeat=info.get("last_heartbeat"), tasks=held)
            log.warning("worker %s declared DEAD (last heartbeat %.1fs ago); held %s",
                        name, now - float(info.get("last_heartbeat") or now), held or "no task")

    def tasks_held(self, worker: str, running: list[str | None]) -> list[str]:
        """Tasks still `processing` under `worker` (bounded read), plus those its last beat ran."""
        held = [r.task_id for r in self.backend.list(Status.PROCESSING, limit=1000) if r.worker == worker]
        held += [t for t in dict.fromkeys(running) if t and t not in held]
        return held

    def sample(self, now: float) -> None:
        counts, done, failed = self.live.snapshot()  # read together, so the sample's figures agree
        self.live.add_sample({"ts": round(now, 3), **counts, "done_by": done, "failed_by": failed})

    # -- the broker ------------------------------------------------------------
    def _watch_broker(self, now: float) -> None:
        """A TCP probe every second (backing off to 5 s while the broker is away), and the
        epoch check every heartbeat interval and at once when the broker returns."""
        if now < self._next_probe:
            return
        try:
            check_reachable(self.settings, timeout=1.0)
        except BrokerUnavailable as exc:
            self._lost_broker(exc.reason)
            self._probe_every = min(self._probe_every * 2, PROBE_MAX)
            self._next_probe = now + self._probe_every
            return
        self._probe_every = 1.0
        self._next_probe = now + 1.0
        if self._broker_lost is not None:
            self._restored_broker()
        if now >= self._next_epoch:
            self._next_epoch = now + self.settings.heartbeat_interval
            self._io(self._check_epoch)

    def _check_epoch(self) -> None:
        try:
            restarted = self.recovery.broker_restarted(self.epoch)
        except (KafkaError, BrokerUnavailable) as exc:
            log.warning("broker epoch check failed: %s", exc)
            self.epoch.close()  # a client that knew the old broker may not recover: start afresh
            self._next_epoch = time.time() + 1.0
            return
        if not restarted:
            return
        # A memory-only broker (the embedded one) starts empty after every restart, a clean one
        # included: that alone asks nothing of a user. What it cost is said where it shows:
        # "published N task(s) again" when queued tasks had lost their messages.
        log.info("the broker started with a new, empty log (an embedded broker keeps nothing across a restart): "
                 "reading the new heartbeat topic from its start; queued tasks whose messages it lost are "
                 "published again")
        self._visible_since = time.time()
        s = self.settings
        ensure_topic(s, s.heartbeat_topic, 1)
        self.consumer.seek_to_beginning(self.partition)
        self._live_from = 0
        self._offset = 0
        self.live.save_monitor_position(0)
        self.recovery.after_restart()

    def _lost_broker(self, reason: str) -> None:
        if self._broker_lost is None:
            self._broker_lost = time.time()
            self.events.emit("connection_lost", service="kafka", error=reason)
            self.events.flush()  # the loop may wait here a long time
            log.warning("broker unreachable (%s); waiting for it (no worker is judged meanwhile)", reason)

    def _restored_broker(self) -> None:
        assert self._broker_lost is not None
        now = time.time()
        self.events.emit("connection_restored", service="kafka", after=round(now - self._broker_lost, 3))
        log.info("broker is back after %.1fs", now - self._broker_lost)
        self._broker_lost = None
        self._visible_since = now
        self._next_epoch = 0.0

    # -- Redis -----------------------------------------------------------------
    def _io(self, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except REDIS_UNAVAILABLE as exc:
            if self._redis_lost is None:
                self._redis_lost = time.time()
                self.events.emit("connection_lost", service="redis", error=str(exc))
                log.warning("Redis unavailable (%s); keeping heartbeats until it returns", exc)
            self._stop.wait(0.5)
            return None
        except (BrokerUnavailable, KafkaError) as exc:
            self._lost_broker(str(exc))
            return None


"""The monitor: heartbeats in, worker registry, failure history and time series out.

A worker is ALIVE while its heartbeats come, DEAD once the newest is older
than `dead_after` seconds (ALIVE again if it returns), LEFT when it said
goodbye. Each DEAD declaration is kept in the failure history with the
worker's last heartbeat and the tasks it held. Samples of queue depth and
per-worker completions are written every `series_interval`, so the
dashboard has history even when nobody was watching.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from kafka import TopicPartition

from yadtq.broker import ensure_topic, make_consumer
from yadtq.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable, MessageError
from yadtq.live import ALIVE, DEAD
from yadtq.logs import EventLog
from yadtq.messages import Heartbeat

log = logging.getLogger(__name__)
T = TypeVar("T")
LEFT = "LEFT"
PRUNE_EVERY = 60.0


class Monitor:
    def __init__(self, settings: Settings, events: EventLog | None = None) -> None:
        self.settings = settings
        self.events = events or EventLog(settings, "monitor")
        self.started_at = time.time()
        self._stop = threading.Event()
        self._next_sample = 0.0
        self._next_prune = 0.0
        self._next_requeue = time.time() + min(settings.requeue_stale_after, 30.0)

    def connect(self) -> None:
        s = self.settings
        self.client = YADTQ(s)
        self.redis = self.client.redis
        self.backend = self.client.backend
        self.live = self.client.live
        ensure_topic(s, s.heartbeat_topic, 1)
        # No consumer group: a group rejoin waits out the previous member's session
        # (BROKER_NOTES.md). The monitor reads the one partition itself and keeps
        # its position in Redis, so a restart neither waits nor replays.
        self.consumer = make_consumer(s, None, fetch_max_wait_ms=100)
        self.partition = TopicPartition(s.heartbeat_topic, 0)
        self.consumer.assign([self.partition])
        position = self.redis.get(self.live.keys.monitor_offset)
        if position is not None:
            self.consumer.seek(self.partition, int(position))
        self.events.emit("connected", kafka=s.kafka_bootstrap, topic=s.heartbeat_topic)

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                batches = self.consumer.poll(timeout_ms=250, max_records=1000)
                beats = []
                offset = None
                for records in batches.values():
                    for rec in records:
                        offset = rec.offset + 1
                        try:
                            beats.append(Heartbeat.decode(rec.value))
                        except MessageError as exc:
                            log.warning("ignored a bad heartbeat: %s", exc)
                self._retry_io(lambda: self.tick(beats, time.time()))
                self.events.flush()
                if offset is not None:
                    self._retry_io(lambda: self.redis.set(self.live.keys.monitor_offset, offset))
        finally:
            self.consumer.close()
            self.events.close()
            self.client.close()

    def tick(self, beats: list[Heartbeat], now: float) -> None:
        """One round: record `beats`, judge liveness, sample, prune, check for `end`."""
        if beats:
            self.record(beats)
        self.judge(now)
        if now >= self._next_sample:
            self.sample(now)
            self._next_sample = now + self.settings.series_interval
        if self.settings.requeue_stale_after and now >= self._next_requeue:
            self._next_requeue = now + max(1.0, self.settings.requeue_stale_after / 4)
            again = self.client.requeue_stale(self.settings.requeue_stale_after)
            if again:
                log.warning("republished %d task(s) queued for over %gs (lost with a broker restart?)",
                            len(again), self.settings.requeue_stale_after)
                self.events.emit("tasks_requeued", count=len(again), tasks=again[:100])
        if self.settings.result_ttl and now >= self._next_prune:
            self.backend.prune_finished(now - self.settings.result_ttl)
            self._next_prune = now + PRUNE_EVERY
        completed = self.live.end_completed_at(self.settings.topic)
        if completed and completed > self.started_at:
            log.info("end of run: stopping the monitor")
            self.stop()

    def record(self, beats: list[Heartbeat]) -> None:
        known = self.live.workers()
        pipe = self.redis.pipeline(transaction=False)
        latest: dict[str, Heartbeat] = {}
        for hb in beats:
            self.live.record_heartbeat(hb, pipe)
            if hb.worker not in latest or hb.ts >= latest[hb.worker].ts:
                latest[hb.worker] = hb
        for name, hb in latest.items():
            before = known.get(name, {})
            if before.get("last_heartbeat", 0) > hb.ts:
                continue  # an old heartbeat replayed after a monitor restart
            if not before and time.time() - hb.ts > self.settings.dead_after:
                continue  # history from before this monitor knew the worker
            state = LEFT if hb.state == "stopping" else ALIVE
            if before.get("status") != state:
                event = {ALIVE: "worker_alive", LEFT: "worker_left"}[state]
                self.events.emit(event, worker=name, worker_pid=hb.pid, host=hb.host)
                log.info("worker %s is %s", name, state)
            self.live.put_worker(name, {
                "name": name, "status": state, "host": hb.host, "pid": hb.pid,
                "incarnation": hb.incarnation, "state": hb.state, "last_heartbeat": hb.ts,
                "current_task": hb.current_task, "partitions": list(hb.partitions),
                "done": hb.done, "failed": hb.failed,
                "since": before.get("since", hb.ts) if before.get("status") == state else hb.ts,
            }, pipe)
        pipe.execute()

    def judge(self, now: float) -> None:
        for name, info in self.live.workers().items():
            if info.get("status") != ALIVE or now - info.get("last_heartbeat", now) <= self.settings.dead_after:
                continue
            held = self.tasks_held(name, info.get("current_task"))
            info.update(status=DEAD, since=now)
            self.live.put_worker(name, info)
            self.live.record_failure({"worker": name, "host": info.get("host"), "pid": info.get("pid"),
                                      "last_heartbeat": info.get("last_heartbeat"), "declared_at": now,
                                      "tasks": held, "partitions": info.get("partitions", [])})
            self.events.emit("worker_died", worker=name, worker_pid=info.get("pid"),
                             last_heartbeat=info.get("last_heartbeat"), tasks=held)
            log.warning("worker %s declared DEAD (last heartbeat %.1fs ago); held %s",
                        name, now - info.get("last_heartbeat", now), held or "no task")

    def tasks_held(self, worker: str, current: str | None) -> list[str]:
        """Tasks still `processing` under `worker` (bounded read), plus its last current task."""
        held = [r.task_id for r in self.backend.list("processing", limit=1000) if r.worker == worker]
        if current and current not in held:
            held.append(current)
        return held

    def sample(self, now: float) -> None:
        done, failed = self.live.completions()
        self.live.add_sample({"ts": round(now, 3), **self.backend.counts(), "done_by": done, "failed_by": failed})

    def _retry_io(self, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except BrokerUnavailable as exc:
            log.warning("broker unavailable (%s); retrying", exc)
            self._stop.wait(1.0)
            return None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.events.emit("connection_lost", service="redis", error=str(exc))
            log.warning("Redis unavailable (%s); retrying", exc)
            self._stop.wait(1.0)
            return None

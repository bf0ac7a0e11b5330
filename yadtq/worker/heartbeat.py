"""The worker's background threads: heartbeats to Kafka, lease renewal in Redis.

A lease that is renewed only while the process runs is what lets another
worker take over a task whose owner died or froze (SIGSTOP): after `lease`
seconds without renewal the claim lapses, and the stale owner's late
completion is fenced out.

Each has its own thread: a heartbeat send can block for the producer's
`max_block_ms` while the broker is away, and a renewal waiting behind it
would let a live worker's leases lapse (the monitor then requeues the task
and a second worker runs it while the first still does).

Beats keep to a fixed schedule (each due one interval after the previous one
was due, not after it was sent), so a slow send never stretches the period.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kafka.errors import KafkaError

from yadtq.store.connection import REDIS_UNAVAILABLE
from yadtq.task.messages import Heartbeat

log = logging.getLogger(__name__)
CHANGE_CHECK = 0.25  # seconds between looks at the snapshot for a change worth a beat at once


class HeartbeatThread(threading.Thread):
    def __init__(self, *, producer: Any, topic: str, interval: float,
                 snapshot: Callable[[], dict[str, Any]]) -> None:
        super().__init__(name="yadtq-heartbeat", daemon=True)
        self.producer = producer
        self.topic = topic
        self.interval = interval
        self.snapshot = snapshot
        self.stopped = threading.Event()
        self.host = socket.gethostname()

    def beat(self) -> None:
        s = self.snapshot()
        if self.producer is None or not s:
            return
        hb = Heartbeat(worker=s["name"], host=self.host, pid=os.getpid(), incarnation=s["incarnation"],
                       state=s["state"], current_task=s["current_task"], done=s["done"],
                       failed=s["failed"], partitions=tuple(s["partitions"]),
                       concurrency=s.get("concurrency", 1), running=tuple(s.get("running", ())),
                       partition_state=tuple(s.get("partition_state", ())))
        try:
            self.producer.send(self.topic, key=hb.worker.encode(), value=hb.encode())
        except KafkaError as exc:
            log.warning("heartbeat not sent: %s", exc)

    def run(self) -> None:
        next_beat = time.monotonic()
        sent_for = None
        while not self.stopped.is_set():
            now = time.monotonic()
            # A change of partitions or state is sent at once, not at the next beat: the registry then
            # tells clients, the API and the dashboard within a moment that a worker serves.
            current = self._what_changes()
            if now >= next_beat or current != sent_for:
                sent_for = current
                try:
                    self.beat()
                except Exception:  # a dead heartbeat thread would look like a dead worker: keep going
                    log.exception("heartbeat failed")
                next_beat += self.interval
                if next_beat < now:  # fell far behind (a frozen process): start the schedule again
                    next_beat = now + self.interval
            self.stopped.wait(max(0.0, min(next_beat - time.monotonic(), CHANGE_CHECK)))

    def _what_changes(self) -> tuple[tuple[int, ...], Any] | None:
        s = self.snapshot()
        if not s:
            return None
        state = s.get("state")  # busy and idle alternate with every task: not worth a beat of their own
        return tuple(s.get("partitions", ())), "serving" if state in ("busy", "idle") else state

    def stop(self) -> None:
        self.stopped.set()


class LeaseRenewer(threading.Thread):
    """Extends the running tasks' leases every third of a lease, whatever the broker does."""

    def __init__(self, *, lease: float, claims: Callable[[], Sequence[tuple[str, str]]],
                 renew: Callable[[list[tuple[str, str]]], None]) -> None:
        super().__init__(name="yadtq-lease", daemon=True)
        self.every = lease / 3
        self.claims = claims
        self.renew = renew
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            claims = list(self.claims())
            if not claims:
                continue
            try:
                self.renew(claims)
            except REDIS_UNAVAILABLE as exc:
                log.warning("lease not renewed: %s", exc)
            except Exception:  # a dead renewer would let every claim lapse: keep going
                log.exception("lease renewal failed")

    def stop(self) -> None:
        self.stopped.set()

"""The faults of a chaos run (worker_farm/chaos.py): which kinds there are, and the injector
that brings one every few seconds and notes when each was over.

`kill` (kill -9 of a random non-standby worker), `stop` (SIGSTOP of one, SIGCONT
a few seconds later), `broker` (kill -9 of the broker and a restart; the embedded
one comes back empty), `redis` (kill -9 of Redis and a restart on its append-only
file) and, behind Sentinel, `primary` (kill -9 of the current primary; once the
Sentinels promote the replica, the fault is over, and a few seconds later the
killed server is started again and rejoins as a replica, the next failover's spare).
The service faults need a `ServiceControl` for services the run owns.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass

from worker_farm.chaos_services import ServiceControl
from worker_farm.supervisor import Farm

FAULT_KINDS = ("kill", "stop", "broker", "redis")  # `--faults all` with one Redis
HA_FAULT_KINDS = ("kill", "stop", "broker", "primary")  # `--faults all` behind Sentinel
SERVICE_FAULTS = {"broker", "redis", "primary"}


@dataclass
class Fault:
    ts: float
    kind: str
    target: str
    pid: int = 0
    ended: float = 0.0  # when the fault was over (process resumed, service answering, new primary named)
    recover_s: float | None = None  # from `ended` to the next task completed


class Injector:
    """Injects one fault every ~`every` seconds (±25%), cycling through `kinds` in a
    shuffled order so each kind comes up; notes each one and when it was over."""

    def __init__(self, farm: Farm, kinds: tuple[str, ...], every: float, rng: random.Random,
                 services: ServiceControl | None, stop_for: float) -> None:
        unknown = set(kinds) - {*FAULT_KINDS, *HA_FAULT_KINDS}
        sentinels = services is not None and services.kill_primary is not None
        if unknown or ((SERVICE_FAULTS & set(kinds)) and services is None) or (
                ("primary" in kinds and not sentinels) or ("redis" in kinds and sentinels)):
            raise ValueError(f"faults {sorted(unknown) or kinds}: unknown, or broker/redis without ServiceControl, "
                             "or primary without Sentinels, or redis (a lone server's kill) with them")
        self.farm, self.kinds, self.every, self.rng = farm, kinds, every, rng
        self.services, self.stop_for = services, stop_for
        self.faults: list[Fault] = []
        self._queue: list[str] = []
        self._stopped: list[tuple[float, Fault]] = []  # (resume at, fault)
        self._rejoin_at = 0.0  # when the last killed primary starts again (0.0: none to start)
        self.next_at = time.monotonic() + every

    @property
    def every_kind_came(self) -> bool:
        return {f.kind for f in self.faults} >= set(self.kinds)

    @property
    def kills(self) -> list[tuple[float, str, int]]:
        return [(f.ts, f.target, f.pid) for f in self.faults if f.kind == "kill"]

    def tick(self) -> None:
        now = time.monotonic()
        for resume_at, fault in [x for x in self._stopped if x[0] <= now]:
            self._stopped.remove((resume_at, fault))
            self._signal(fault.pid, signal.SIGCONT)
            fault.ended = time.time()
        if self._rejoin_at and now >= self._rejoin_at:
            self._rejoin()
        if now < self.next_at:
            return
        self.next_at = now + self.every * self.rng.uniform(0.75, 1.25)
        if not self._queue:
            self._queue = self.rng.sample(self.kinds, len(self.kinds))
        kind = self._queue.pop()
        if kind in ("kill", "stop"):
            stopped = {f.pid for _, f in self._stopped}
            victims = [(n, pid) for n, pid, standby in self.farm.running() if not standby and pid not in stopped]
            if not victims:
                return
            name, pid = self.rng.choice(victims)
            fault = Fault(round(time.time(), 3), kind, name, pid)
            if not self._signal(pid, signal.SIGKILL if kind == "kill" else signal.SIGSTOP):
                return
            if kind == "stop":
                self._stopped.append((now + self.stop_for, fault))
            else:
                fault.ended = fault.ts
        elif kind == "primary":
            assert self.services is not None and self.services.kill_primary is not None
            self._rejoin()  # the last one killed must be back: it is the replica this kill promotes
            fault = Fault(0.0, kind, kind)
            fault.ts = round(self.services.kill_primary(), 3)
            fault.ended = time.time()
            # Not at once: for a few seconds the new primary has no replica (steps do not wait).
            self._rejoin_at = time.monotonic() + self.services.down_for * 3
            # The failover took seconds: the next fault comes `every` after it, so the run is seen
            # to recover (and the next primary kill, which first waits for the replica, does not
            # come at once and hold this loop again).
            self.next_at = max(self.next_at, time.monotonic() + self.every * self.rng.uniform(0.75, 1.25))
        else:
            assert self.services is not None
            fault = Fault(round(time.time(), 3), kind, kind)
            restart = self.services.restart_broker if kind == "broker" else self.services.restart_redis
            restart()
            fault.ended = time.time()
        self.faults.append(fault)

    def resume_all(self) -> None:
        for _, fault in self._stopped:
            self._signal(fault.pid, signal.SIGCONT)
            fault.ended = time.time()
        self._stopped.clear()
        self._rejoin()

    def _rejoin(self) -> None:
        if self._rejoin_at and self.services is not None and self.services.rejoin_primary is not None:
            self.services.rejoin_primary()
        self._rejoin_at = 0.0

    def note_progress(self, success: int, last: dict[int, int]) -> None:
        """Fills in time to recover: the first time the success count grew after a fault ended."""
        for i, f in enumerate(self.faults):
            if f.recover_s is not None or not f.ended:
                continue
            if i not in last:
                last[i] = success
            elif success > last[i]:
                f.recover_s = round(time.time() - f.ended, 2)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> bool:
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False  # it died on its own a moment ago

"""Spawns worker subprocesses from recipes, reaps them and respawns the crashed.

One line per event goes to `out`: a child started, crashed (with its reason),
is respawned, stopped cleanly; and what each child reports about itself,
prefixed with its name: its events (partitions assigned/revoked, end of run,
read from its JSON-lines event stream) and its printed CRASH lines, warnings
and errors.

Every crash the farm sees goes into the failure history in Redis (with time,
host, pid, exit reason and the tasks the child held), and into the farm's own
event stream (when it has one) as `worker_crashed`, even when the child is back half a second
later, before the monitor could notice it was gone.

Respawn backoff is exponential (`backoff`, doubled per crash, capped at
`backoff_max`) and starts again from `backoff` once a child has run for
`healthy_after` seconds, so a crash loop slows down but an occasional crash
is repaired at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from worker_farm.events import EventTail, describe
from worker_farm.spec import LineFilter, WorkerSpec, child_env
from yadtq.config import Settings
from yadtq.errors import RET_USAGE, YADTQError
from yadtq.logs import EventLog

if TYPE_CHECKING:
    from yadtq.store.connection import RedisClient

# The worker, store and Redis modules are imported where a crash is handled, not with the farm:
# `make run` starts the farm beside the services, and its workers start once its imports are done.


@dataclass
class Child:
    spec: WorkerSpec
    proc: subprocess.Popen[str]
    started: float
    backoff: float
    restarts: int = 0
    respawn_at: float | None = None  # set while dead and waiting out its backoff
    lines: LineFilter = field(default_factory=LineFilter, repr=False)
    reader: threading.Thread | None = field(default=None, repr=False)
    tail: EventTail | None = field(default=None, repr=False)


def exit_reason(code: int) -> str:
    from yadtq.worker import EXIT_HARD_TIME_LIMIT
    from yadtq.worker.crash import CRASH_EXIT_CODE
    if code == CRASH_EXIT_CODE:
        return "crash injected"
    if code == EXIT_HARD_TIME_LIMIT:
        return "ended by a task past its hard time limit"
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Farm:
    """Supervises one worker process per spec. `run()` blocks; `stop()` may be
    called from a signal handler or another thread."""

    def __init__(self, settings: Settings, specs: list[WorkerSpec], respawn: bool = True,
                 out: Callable[[str], None] | None = None, *, backoff: float = 0.5, backoff_max: float = 30.0,
                 healthy_after: float = 30.0, grace: float = 15.0, env: Mapping[str, str] | None = None,
                 events: EventLog | None = None) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"worker names must be unique: {names}")
        self.settings = settings
        self.specs = specs
        self.respawn = respawn
        self.backoff, self.backoff_max, self.healthy_after, self.grace = backoff, backoff_max, healthy_after, grace
        self._out = out or (lambda line: print(line, flush=True))
        self._env = child_env(settings, os.environ if env is None else env)
        self.children: dict[str, Child] = {}
        self.finished: dict[str, int] = {}  # name -> exit code of children that are gone for good
        self._stop = threading.Event()
        self._force = False
        self._lock = threading.RLock()
        # `python -m worker_farm` writes `<log_dir>/farm.events.jsonl`; a farm built in code only if asked.
        self.events = events or EventLog(None, "farm")
        self._redis: RedisClient | None = None

    def say(self, line: str) -> None:
        with self._lock:
            self._out(line)

    # -- children ------------------------------------------------------------
    def _spawn(self, spec: WorkerSpec, restarts: int = 0, backoff: float | None = None) -> None:
        # Spawned from the thread that runs `run()`: the parent-death signal
        # (see spec.py) fires when that thread ends, and it outlives every child.
        tail = EventTail.at_end(Path(self.settings.log_dir) / f"worker-{spec.name}.events.jsonl")
        proc = subprocess.Popen(spec.argv(), env=self._env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True, errors="replace")
        child = Child(spec, proc, time.monotonic(), self.backoff if backoff is None else backoff, restarts, tail=tail)
        child.reader = threading.Thread(target=self._echo, args=(child, proc.stdout), daemon=True,
                                        name=f"farm-echo-{spec.name}")
        child.reader.start()
        with self._lock:
            self.children[spec.name] = child
        kind = "standby worker" if spec.standby else "worker"
        extra = f", crash {spec.crash}" + (f" seed {spec.seed}" if spec.seed is not None else "") if spec.crash else ""
        again = f"respawned {kind} {spec.name} (pid {proc.pid}, restart {restarts}" if restarts else \
            f"started {kind} {spec.name} (pid {proc.pid}"
        self.say(f"[farm] {again}{extra})")

    def _echo(self, child: Child, stream: IO[str] | None) -> None:
        if stream is None:
            return
        with stream:
            for raw in stream:
                text = child.lines(raw)
                if text is not None:
                    self.say(f"[{child.spec.name}] {text}")

    def _follow(self, child: Child) -> None:
        """Echoes the child's new events worth a line."""
        if child.tail is None:
            return
        for event in child.tail.read():
            text = describe(event)
            if text is not None:
                self.say(f"[{child.spec.name}] {text}")

    def running(self) -> list[tuple[str, int, bool]]:
        """(name, pid, standby) of every child alive right now (chaos tests pick victims here)."""
        with self._lock:
            return [(n, c.proc.pid, c.spec.standby) for n, c in self.children.items()
                    if c.respawn_at is None and c.proc.poll() is None]

    def _reap(self, name: str, child: Child, code: int, now: float) -> None:
        if child.reader is not None:
            child.reader.join(timeout=2)  # its last lines (a CRASH line) come before the verdict
        self._follow(child)
        if code == 0:
            self.say(f"[farm] {name} stopped cleanly")
            self._retire(name, code)
            return
        from yadtq.worker.crash import CRASH_EXIT_CODE
        last = "" if code == CRASH_EXIT_CODE or code < 0 else f"; last output: {child.lines.last_line[:200]!r}"
        self.say(f"[farm] {name} (pid {child.proc.pid}) crashed: {exit_reason(code)}{last}")
        if code != RET_USAGE:
            self._record_crash(child, code)
        if code == RET_USAGE:
            self.say(f"[farm] not respawning {name}: a usage error does not go away by itself")
            self._retire(name, code)
        elif not self.respawn or self._stop.is_set():
            self._retire(name, code)
        else:
            child.respawn_at = now + child.backoff
            self.say(f"[farm] respawning {name} in {child.backoff:.1f}s")

    def _record_crash(self, child: Child, code: int) -> None:
        """Failure history entry and `worker_crashed` event for a child that died on its own."""
        from yadtq.store.backend import Backend
        from yadtq.store.connection import RedisError
        from yadtq.store.live_state import LiveState
        from yadtq.task.status import Status
        name = child.spec.name
        tasks = list(child.tail.held) if child.tail else []
        entry: dict[str, Any] = {
            "worker": name, "host": socket.gethostname(), "pid": child.proc.pid, "declared_at": time.time(),
            "last_heartbeat": None, "tasks": tasks, "partitions": child.tail.partitions if child.tail else [],
            "reason": exit_reason(code), "exit_code": code, "source": "farm",
        }
        try:
            client = self._redis_client()
            live = LiveState(client, self.settings)
            # Redis knows claims the event stream may not have flushed before a kill -9.
            entry["tasks"] += [r.task_id for r in Backend(client, self.settings).list(Status.PROCESSING, limit=1000)
                               if r.worker == name and r.task_id not in tasks]
            entry["last_heartbeat"] = live.workers().get(name, {}).get("last_heartbeat")
            live.record_failure(entry)
        except (RedisError, YADTQError) as exc:
            self.say(f"[farm] could not record {name}'s crash in the failure history: {exc}")
        self.events.emit("worker_crashed", worker=name, worker_pid=child.proc.pid, host=entry["host"],
                         reason=entry["reason"], exit_code=code, tasks=entry["tasks"])
        self.events.flush()
        self.say(f"[farm] {name} held {', '.join(entry['tasks']) or 'no task'}; recorded in the failure history")

    def _redis_client(self) -> RedisClient:
        if self._redis is None:
            from yadtq.store.connection import connect_redis
            self._redis = connect_redis(self.settings)
        return self._redis

    def _retire(self, name: str, code: int) -> None:
        with self._lock:
            self.finished[name] = code
            del self.children[name]

    def supervise_once(self) -> None:
        """Reaps exited children; resets the backoff of healthy ones; respawns those due."""
        now = time.monotonic()
        with self._lock:
            children = list(self.children.items())
        for name, child in children:
            if child.respawn_at is not None:
                if now >= child.respawn_at and not self._stop.is_set():
                    self._spawn(child.spec, child.restarts + 1, min(child.backoff * 2, self.backoff_max))
                continue
            code = child.proc.poll()
            if code is None:
                self._follow(child)
                if now - child.started > self.healthy_after:
                    child.backoff = self.backoff
            else:
                self._reap(name, child, code, now)

    # -- the whole farm ----------------------------------------------------------
    def run(self) -> int:
        """Starts every child and supervises until all have exited or `stop()`.

        Returns 0 when stopped, or when every child ended cleanly (after `end`);
        1 when children ended and at least one of them did not end cleanly.
        """
        try:
            for spec in self.specs:
                if self._stop.is_set():
                    break
                self._spawn(spec)
            while not self._stop.is_set() and self.children:
                self.supervise_once()
                self._stop.wait(0.2)
        finally:
            self.stop_all()
            self.events.close()
            if self._redis is not None:
                self._redis.close()
        stopped = self._stop.is_set()
        failed = sorted(n for n, code in self.finished.items() if code != 0)
        if not stopped:
            self.say("[farm] every worker has exited" + (f"; not cleanly: {', '.join(failed)}" if failed else ""))
        return 0 if stopped or not failed else 1

    def stop(self) -> None:
        """Asks for a clean stop; a second call kills the stragglers without waiting."""
        if self._stop.is_set():
            self._force = True
        self._stop.set()

    def stop_all(self) -> None:
        """SIGTERM every live child (each finishes its task in hand), wait up to
        `grace` seconds, then SIGKILL the stragglers' process groups."""
        with self._lock:
            children = list(self.children.items())
        live = [(n, c) for n, c in children if c.proc.poll() is None]
        live_names = {n for n, _ in live}
        if live:
            self.say(f"[farm] stopping {len(live)} worker(s)")
        for _, c in live:
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while any(c.proc.poll() is None for _, c in live) and time.monotonic() < deadline and not self._force:
            time.sleep(0.05)
        for name, c in live:
            if c.proc.poll() is None:
                os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
                self.say(f"[farm] {name} did not stop in time: killed")
        for name, c in children:
            if c.reader is not None:
                c.reader.join(timeout=2)
            self._follow(c)
            code = c.proc.wait()
            if name in live_names:
                self.say(f"[farm] {name} stopped" + ("" if code == 0 else f": {exit_reason(code)}"))
            with self._lock:
                self.finished[name] = code
                self.children.pop(name, None)

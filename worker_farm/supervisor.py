"""Spawns worker subprocesses from a recipe, reaps them and respawns the crashed.

Children get their settings as `YADTQ_*` variables (never a live client across
a fork). Each child's log lines that matter (crashes, partition moves) are
echoed with its name, one line per event.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Callable

from yadtq.config import Settings

ECHOED = ("assigned partitions", "CRASH", "end of run", "Traceback", "Error", "error:")
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0  # a child that ran this long earns a fresh backoff


@dataclass
class WorkerSpec:
    """What a child is: everything needed to start it again."""

    name: str
    standby: bool = False
    crash: str | None = None
    seed: int | None = None
    tasks: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "yadtq", "worker", "--name", self.name]
        for mod in self.tasks:
            args += ["--tasks", mod]
        if self.standby:
            args.append("--standby")
        if self.crash:
            args += ["--crash", self.crash]
            if self.seed is not None:
                args += ["--seed", str(self.seed)]
        return args


@dataclass
class Child:
    spec: WorkerSpec
    proc: subprocess.Popen[str]
    started: float
    restarts: int = 0
    backoff: float = 0.5
    respawn_at: float | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


class Farm:
    def __init__(self, settings: Settings, specs: list[WorkerSpec], respawn: bool = True,
                 out: Callable[[str], None] | None = None, backoff_max: float = BACKOFF_MAX) -> None:
        self.settings = settings
        self.specs = specs
        self.respawn = respawn
        self.backoff_max = backoff_max
        self.say = out or (lambda line: print(line, flush=True))
        self.children: dict[str, Child] = {}
        self.finished: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
        env.update(self.settings.env())
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, spec: WorkerSpec, restarts: int = 0, backoff: float = 0.5) -> None:
        proc = subprocess.Popen(spec.argv(), env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)
        child = Child(spec, proc, time.monotonic(), restarts, backoff)
        child.reader = threading.Thread(target=self._echo, args=(spec.name, proc.stdout), daemon=True)
        child.reader.start()
        self.children[spec.name] = child
        kind = "standby worker" if spec.standby else "worker"
        extra = f", crash {spec.crash}" if spec.crash else ""
        self.say(f"[farm] {'respawned' if restarts else 'started'} {kind} {spec.name} (pid {proc.pid}{extra})")

    def _echo(self, name: str, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            if any(marker in line for marker in ECHOED):
                text = line.rstrip().split(" INFO yadtq.worker: ")[-1].split(" WARNING ")[-1]
                with self._lock:
                    self.say(f"[{name}] {text}")

    def start(self) -> None:
        for spec in self.specs:
            self._spawn(spec)

    def supervise_once(self) -> None:
        """Reaps exited children; schedules and performs respawns."""
        now = time.monotonic()
        for name, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                if child.respawn_at is None and now - child.started > HEALTHY_AFTER:
                    child.backoff = 0.5
                continue
            if child.respawn_at is None:
                if code == 0:
                    self.say(f"[farm] {name} stopped cleanly")
                    self.finished[name] = code
                    del self.children[name]
                    continue
                reason = "crash injected" if code == 70 else f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                self.say(f"[farm] {name} (pid {child.proc.pid}) crashed: {reason}")
                if not self.respawn or self._stop.is_set():
                    self.finished[name] = code
                    del self.children[name]
                    continue
                child.respawn_at = now + child.backoff
                self.say(f"[farm] respawning {name} in {child.backoff:.1f}s")
            elif now >= child.respawn_at:
                self._spawn(child.spec, child.restarts + 1, min(child.backoff * 2, self.backoff_max))

    def run(self) -> int:
        """Supervises until every child has stopped cleanly or a stop is asked; returns the exit code."""
        self.start()
        while not self._stop.is_set() and self.children:
            self.supervise_once()
            self._stop.wait(0.2)
        self.stop_all()
        if any(code != 0 for code in self.finished.values()) and not self.children and not self._stop.is_set():
            return 1
        return 0

    def stop(self) -> None:
        self._stop.set()

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM every child (they finish the task in hand), then SIGKILL stragglers."""
        live = [c for c in self.children.values() if c.proc.poll() is None]
        for c in live:
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in live:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
                self.say(f"[farm] {c.spec.name} did not stop in {grace:g}s: killed")
        for name, c in list(self.children.items()):
            self.finished[name] = c.proc.returncode if c.proc.returncode is not None else 0
        self.children.clear()

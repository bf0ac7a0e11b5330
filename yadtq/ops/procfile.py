"""`yadtq run`: starts the Procfile's processes and stops them in order.

What `make run` uses instead of honcho, for what honcho does not do:

- a process that ends on its own ends the stack, but the others are stopped
  one at a time, in reverse Procfile order (workers before the monitor,
  services last), each with `grace` seconds before it is killed (honcho gives
  every process 5 s at once, which cut the farm's orderly stop short);
- every process runs in its own session, so a terminal's Ctrl+C reaches only
  this supervisor, which then stops them in that order; a second Ctrl+C kills
  what is left at once;
- children write into pipes this process drains, so when the terminal side of
  `make run | tee log` goes away with Ctrl+C, output is dropped and the stop
  goes on (children never see a broken pipe);
- a process counts as stopped when its whole process group is gone, not just
  the shell that ran it.

The Procfile stays the description of the stack (`honcho start` still runs
it): one `name: command` per line, run with `/bin/sh -c`. Given a `gate`, the
supervisor does the `yadtq wait && ` that begins a line itself, once for all
such lines (yadtq/ops/service_wait.py), and starts them when it opens; the
other lines start at once (the farm waits for the services itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from yadtq.errors import ConfigError
from yadtq.ops.service_wait import WAIT_PREFIX

# Waits until the services serve: None once they do, else why not ("stopped" when the event is set).
Gate = Callable[[threading.Event], "str | None"]

_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


@dataclass(frozen=True)
class Entry:
    name: str
    command: str


def read_procfile(path: Path) -> list[Entry]:
    """The `name: command` lines of a Procfile; raises `ConfigError` on anything else."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise ConfigError(f"{path}:{n}: want 'name: command', got {line!r}")
        entries.append(Entry(m[1], m[2]))
    if len({e.name for e in entries}) != len(entries) or not entries:
        raise ConfigError(f"{path}: want at least one process, each name once")
    return entries


@dataclass
class Running:
    entry: Entry
    proc: subprocess.Popen[bytes]
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session: the shell leads its own group

    def group_alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _group_has_live_member(self.pgid)


def _group_has_live_member(pgid: int) -> bool:
    """False when every process left in group `pgid` is a zombie (dead, waiting to be reaped by init)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Stack:
    """Runs `entries`; `run()` blocks until one ends or `stop()`, then stops the rest in order."""

    def __init__(self, entries: list[Entry], *, env: Mapping[str, str], cwd: Path, grace: float = 30.0,
                 out: IO[str] | None = None, clock: Callable[[], str] | None = None, gate: Gate | None = None) -> None:
        self.entries = entries
        self.gate = gate
        self.env = dict(env)
        self.cwd = cwd
        self.grace = grace
        self._out: IO[str] | None = out if out is not None else sys.stdout
        self._clock = clock or (lambda: time.strftime("%H:%M:%S"))
        self._width = max(len(e.name) for e in [*entries, Entry("run", "")])
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._force = threading.Event()
        self._wake = threading.Event()
        self.running: list[Running] = []
        self.first_exit: tuple[str, int] | None = None

    # -- output ----------------------------------------------------------------
    def say(self, name: str, line: str) -> None:
        with self._lock:
            if self._out is None:
                return
            try:
                self._out.write(f"{self._clock()} {name:<{self._width}} | {line}\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                # The reader is gone (`| tee` ended by Ctrl+C): keep stopping, quietly.
                self._out = None

    def _echo(self, r: Running) -> None:
        assert r.proc.stdout is not None
        with r.proc.stdout:
            for raw in r.proc.stdout:
                self.say(r.entry.name, raw.decode(errors="replace").rstrip())
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Starts the lines that wait for nothing (or wait themselves) at once, then, once the gate
        opens, the `yadtq wait && ` lines: a farm that waits for the services in its own process
        imports and starts its workers while the services come up (the group's first join is held
        by the broker for seconds, so every second before it is sent counts)."""
        gated = [e for e in self.entries if self.gate is not None and e.command.startswith(WAIT_PREFIX)]
        for entry in [e for e in self.entries if e not in gated]:
            if self._stop.is_set():
                return
            self._launch(entry, entry.command)
        if not gated:
            return
        # Woken early by stop() or by a process's end (its output closes): either ends the start.
        assert self.gate is not None
        while (why := self.gate(self._wake)) == "stopped" and not self._stop.is_set() and \
                not any(r.proc.stdout is None or r.proc.stdout.closed for r in self.running):
            self._wake.clear()
        if why is not None:
            if why != "stopped":
                self.say("run", f"error: {why}; not starting {', '.join(e.name for e in gated)}")
                self.first_exit = (gated[0].name, 3)
                self.stop()
            return
        for entry in gated:
            if self._stop.is_set():
                return
            self._launch(entry, entry.command.removeprefix(WAIT_PREFIX))

    def _launch(self, entry: Entry, command: str) -> None:
        # The parent-death signal (setpriv) ends a process whose supervisor was
        # killed outright; the Procfile `exec`s the real program so it is that process.
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        argv = ["/bin/sh", "-c", command]
        if setpriv:
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        proc = subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        r = Running(entry, proc)
        r.reader = threading.Thread(target=self._echo, args=(r,), daemon=True, name=f"run-{entry.name}")
        r.reader.start()
        self.running.append(r)
        # Kept in Procfile order whatever the start order: the stop goes backwards through it.
        self.running.sort(key=lambda x: self.entries.index(x.entry))
        self.say("run", f"started {entry.name} (pid {proc.pid}): {command}")

    def run(self) -> int:
        """0 when stopped by `stop()` or when the first process to end ended with 0; else 1."""
        try:
            self.start()
            while not self._stop.is_set():
                ended = next(((r.entry.name, code) for r in self.running if (code := r.proc.poll()) is not None), None)
                if ended is not None:
                    self.first_exit = ended
                    name, code = ended
                    self.say("run", f"{name} exited with code {code}; stopping the rest")
                    break
                self._wake.wait(0.2)
                self._wake.clear()
        finally:
            self.stop_all()
        if self.first_exit is None:
            return 0
        return 0 if self.first_exit[1] == 0 else 1

    def stop(self) -> None:
        """Asks for an orderly stop; a second call kills what is left at once (signal-handler safe)."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()
        self._wake.set()

    def stop_all(self) -> None:
        if any(r.group_alive() for r in self.running):
            self.say("run", "stopping in order: " + ", ".join(r.entry.name for r in reversed(self.running))
                     + f" (each up to {self.grace:g}s; Ctrl+C again kills at once)")
        for r in reversed(self.running):
            self._stop_one(r)
        for r in self.running:
            if r.reader is not None:
                r.reader.join(timeout=5)
        self.say("run", "everything stopped")

    def _stop_one(self, r: Running) -> None:
        if not r.group_alive():
            return
        began = time.monotonic()
        self._signal(r, signal.SIGTERM)
        deadline = began + self.grace
        while r.group_alive() and time.monotonic() < deadline and not self._force.is_set():
            self._force.wait(0.05)
        if r.group_alive():
            self._signal(r, signal.SIGKILL)
            r.proc.wait()
            how = "killed (second Ctrl+C)" if self._force.is_set() else f"killed after {self.grace:g}s"
        else:
            how = f"stopped in {time.monotonic() - began:.1f}s"
        code = r.proc.wait()
        self.say("run", f"{r.entry.name} {how}" + ("" if code in (0, -signal.SIGTERM) else f" (exit {code})"))

    @staticmethod
    def _signal(r: Running, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(r.pgid, sig)


def install_signal_handlers(stack: Stack) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stack.stop())

"""What a farm child is (a recipe to start it again), and which of its output lines matter.

A child is a full `python -m yadtq worker` process started from a `WorkerSpec`:
argv plus `YADTQ_*` variables, never a live client inherited across a fork.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from yadtq.config import Settings


@dataclass(frozen=True)
class WorkerSpec:
    """Everything needed to start (and restart) one worker."""

    name: str
    standby: bool = False
    crash: str | None = None
    seed: int | None = None
    tasks: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # more `yadtq worker` arguments (e.g. `--queues`)

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "yadtq", "worker", "--name", self.name]
        for mod in self.tasks:
            args += ["--tasks", mod]
        args += self.args
        if self.standby:
            args.append("--standby")
        if self.crash:
            args += ["--crash", self.crash]
            if self.seed is not None:
                args += ["--seed", str(self.seed)]
        return _with_parent_death_signal(args)


def child_env(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """`base` (the farm's environment) without its `YADTQ_*` variables, plus `settings` as `YADTQ_*`."""
    env = {k: v for k, v in base.items() if not k.startswith("YADTQ_")}
    env.update(settings.env())
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the farm as they are written
    return env


def _with_parent_death_signal(args: list[str]) -> list[str]:
    # Children run in their own session (a terminal's Ctrl+C reaches only the farm,
    # which then stops them in order), so nothing else would end them if the farm
    # itself were killed with SIGKILL. setpriv (util-linux) asks the kernel to send
    # SIGTERM when the spawning thread dies, then execs the worker (same pid).
    # Where it is missing (not Linux), the farm's own clean stop is the only guard.
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--", *args] if setpriv else args


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+): (?P<msg>.*)$")


class LineFilter:
    """Picks the lines of one child's output worth echoing: what it prints (CRASH lines,
    CLI errors) and its warnings and errors. Events come from its event stream
    (worker_farm/events.py), not from here. Stateful across a traceback."""

    def __init__(self) -> None:
        self._last_logger = ""
        self._in_traceback = False
        self.last_line = ""

    def __call__(self, raw: str) -> str | None:
        line = raw.rstrip()
        if not line:
            return None
        self.last_line = line
        if self._in_traceback:
            if line[:1].isspace():
                return None
            # The exception line that ends a traceback: echo it unless it belongs
            # to a record of the Kafka client's own logging (shutdown noise).
            self._in_traceback = False
            return None if self._last_logger.startswith("kafka") else f"exception: {line}"
        if line.startswith("Traceback"):
            self._in_traceback = True
            return None
        m = _LOG_LINE.match(line)
        if m is None:
            # Printed, not logged: crash injection and CLI errors.
            return line if line.startswith(("CRASH", "yadtq:")) else None
        self._last_logger = m["logger"]
        if m["level"] in ("WARNING", "ERROR", "CRITICAL") and m["logger"].startswith("yadtq"):
            return f"{m['level']}: {m['msg']}"
        return None

"""CPU time of processes by role, read from /proc (Linux): what the scaling benchmark divides by tasks.

A `Meter` takes the root pids of each role ("workers", "broker", "redis", "client"), finds each
root's descendants once, never entering another role's root (the embedded broker is a front
process with tansu as its child; a script may exec or fork java), and at `stop()` gives, per
role, the CPU seconds (utime + stime, all threads) its processes spent since the meter started,
the busiest single process's share of one core, the machine's busy share of all its cores
(/proc/stat: every process, the shared machine's other load included) and, for one process named
`disk_wait_pid` (Redis), the share of samples it was seen in uninterruptible sleep (state D:
waiting on its disk, which for Redis with `appendfsync always` is its fsync).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.005  # how often the disk-wait sampler looks at the process's state


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of all of the process's threads, in seconds; None when the process is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICK


def state(pid: int) -> str:
    """The process's state letter (R, S, D, ...), "" when it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else ""


def tree(root: int, stop: frozenset[int] = frozenset()) -> list[int]:
    """`root` and its living descendants, not descending into the pids in `stop` (another role's roots)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(c for c in children.get(pid, []) if c not in stop)
    return found


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot; idle and iowait are not busy, steal is (not ours to use)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


@dataclass
class Usage:
    """What a role's processes spent over the meter's window."""

    cpu_s: float  # all its processes' CPU seconds
    busiest: float  # its busiest single process's CPU share of one core (1.0 = a whole core)
    processes: int = 0


@dataclass
class Reading:
    wall_s: float
    roles: dict[str, Usage]
    machine_busy: float  # share of all the machine's cores busy (any process, ours or not)
    disk_wait: float | None  # share of samples `disk_wait_pid` was in state D
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)


class Meter:
    def __init__(self, roles: dict[str, list[int]], disk_wait_pid: int | None = None) -> None:
        roots = {pid for pids in roles.values() for pid in pids}
        # The client (this process) is the parent of every other role's root: each role stops at the others'.
        self.pids = {role: sorted({p for root in mine for p in tree(root, frozenset(roots - set(mine)))})
                     for role, mine in roles.items()}
        self.start = {pid: cpu_seconds(pid) or 0.0 for pids in self.pids.values() for pid in pids}
        self.machine0 = machine_jiffies()
        self.t0 = time.perf_counter()
        self.disk_wait_pid = disk_wait_pid
        self.samples = self.waiting = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="disk-wait-sampler", daemon=True)
        if disk_wait_pid is not None:
            self._sampler.start()

    def _sample(self) -> None:
        assert self.disk_wait_pid is not None
        while not self._done.wait(SAMPLE_S):
            s = state(self.disk_wait_pid)
            if s:
                self.samples += 1
                self.waiting += s == "D"

    def stop(self) -> Reading:
        wall = time.perf_counter() - self.t0
        now = {pid: cpu_seconds(pid) for pid in self.start}
        busy1, total1 = machine_jiffies()
        self._done.set()
        if self._sampler.is_alive():
            self._sampler.join()
        # A process gone before the end (none should be) counts what it had spent when last read.
        spent = {pid: max(0.0, (now[pid] if now[pid] is not None else start) - start)
                 for pid, start in self.start.items()}
        roles = {role: Usage(sum(spent[p] for p in pids), max((spent[p] for p in pids), default=0.0) / wall,
                             len(pids))
                 for role, pids in self.pids.items()}
        busy0, total0 = self.machine0
        return Reading(wall, roles, (busy1 - busy0) / max(1, total1 - total0),
                       self.waiting / self.samples if self.samples else None)

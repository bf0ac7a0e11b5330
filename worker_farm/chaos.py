"""A chaos run: a farm with respawn, a random non-standby worker killed with
kill -9 every few seconds, and a ledger of every execution to judge the
guarantees by.

Used by tests/test_chaos.py (short) and bench/chaos.py (long). Tasks are
`ledger_add` from a ledger module (tests/ledger_tasks.py), which appends
`<task id> <pid> <attempt>` to the Redis list `<prefix>ledger` as each
execution starts.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from worker_farm.spec import WorkerSpec
from worker_farm.supervisor import Farm
from yadtq.client import YADTQ
from yadtq.config import Settings

SUMMARY_KEYS = ("tasks", "kills", "lost", "run_twice_after_completion", "reruns_after_midrun_kill", "wall_s",
                "throughput")


@dataclass
class ChaosReport:
    tasks: int
    kills: int
    lost: int
    # Executions no kill explains: a task run again although its earlier run
    # was not cut off by the kill of its process. The promise says 0.
    run_twice_after_completion: int
    reruns_after_midrun_kill: int
    wall_s: float
    throughput: float
    counts: dict[str, int] = field(default_factory=dict)
    kill_phase: tuple[float, int] = (0.0, 0)  # (seconds with kills, tasks succeeded by their end)
    unexplained: list[str] = field(default_factory=list, repr=False)  # why each violation counted
    kill_log: list[tuple[float, str, int]] = field(default_factory=list, repr=False)
    ledger: list[tuple[str, int, int]] = field(default_factory=list, repr=False)

    @property
    def counts_add_up(self) -> bool:
        return sum(self.counts.values()) == self.tasks

    def summary(self) -> dict[str, Any]:
        """The figures, as written to summary.json."""
        return {k: getattr(self, k) for k in SUMMARY_KEYS}


class Killer:
    """Kills a random live non-standby worker of `farm` every ~`every` seconds (±25%)."""

    def __init__(self, farm: Farm, every: float, rng: random.Random) -> None:
        self.farm, self.every, self.rng = farm, every, rng
        self.kills: list[tuple[float, str, int]] = []
        self.next_at = time.monotonic() + every

    def tick(self) -> None:
        if time.monotonic() < self.next_at:
            return
        victims = [(name, pid) for name, pid, standby in self.farm.running() if not standby]
        if victims:
            name, pid = self.rng.choice(victims)
            try:
                os.kill(pid, signal.SIGKILL)
                self.kills.append((round(time.time(), 3), name, pid))
            except ProcessLookupError:
                pass  # it died on its own a moment ago
        self.next_at = time.monotonic() + self.every * self.rng.uniform(0.75, 1.25)


def run_chaos(settings: Settings, tasks: int, workers: int = 4, standby: int = 1, kill_every: float = 2.0,
              max_minutes: float = 5.0, seed: int = 1, task_module: str = "ledger_tasks",
              pause: float = 0.004, say: Callable[[str], None] | None = None, drain_minutes: float = 0.0,
              progress: Callable[[dict[str, int], int], None] | None = None,
              pauses: Sequence[float] | None = None) -> ChaosReport:
    """Submits `tasks` ledger tasks, kills workers while they run (for at most
    `max_minutes`), then lets the farm finish without kills for at most
    `drain_minutes`, stops it and judges. Children inherit this process's
    environment: PYTHONPATH must let them import `task_module`. `pauses`, when
    given, are task durations drawn at random per task (a mixed workload)."""
    rng = random.Random(seed)
    specs = [WorkerSpec(f"W{i}", tasks=(task_module,)) for i in range(1, workers + 1)]
    specs += [WorkerSpec(f"S{i}", standby=True, tasks=(task_module,)) for i in range(1, standby + 1)]
    # A worker is killed every ~8 s on average: keep its respawn quick.
    farm = Farm(settings, specs, respawn=True, out=say or (lambda line: None), backoff_max=1.0)
    thread = threading.Thread(target=farm.run, name="chaos-farm", daemon=True)
    killer = Killer(farm, kill_every, rng)
    with YADTQ(settings) as q:
        thread.start()
        try:
            started = time.monotonic()
            ids: list[str] = []
            for i in range(0, tasks, 1000):
                ids += q.submit_many([("ledger_add", [n, 1, rng.choice(pauses) if pauses else pause])
                                      for n in range(i, min(tasks, i + 1000))])
            last_report = started
            kill_until = started + max_minutes * 60
            drain_until = kill_until + drain_minutes * 60
            kill_phase = (0.0, 0)
            while True:
                counts = q.backend.counts()
                now = time.monotonic()
                if now < kill_until or not kill_phase[0]:
                    kill_phase = (now - started, counts.get("success", 0))
                if counts.get("success", 0) >= tasks or now >= drain_until:
                    break
                if now < kill_until:
                    killer.tick()
                if progress and now - last_report >= 10:
                    progress(counts, len(killer.kills))
                    last_report = now
                time.sleep(0.05)
            wall = time.monotonic() - started
        finally:
            farm.stop()
            thread.join(timeout=farm.grace + 30)
        records = [rec for i in range(0, len(ids), 5000) for rec in q.backend.get_many(ids[i:i + 5000])]
        counts = q.backend.counts()
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        # A test/bench-sized list read once at the end (not a dashboard path).
        raw = r.lrange(settings.prefix + "ledger", 0, -1)
        raw_end = r.lrange(settings.prefix + "ledger_end", 0, -1)
    finally:
        r.close()
    ledger = [(tid, int(pid), int(attempt)) for tid, pid, attempt in (line.split() for line in raw)]
    done = {rec.task_id for rec in records if rec.status == "success"}
    ended = {(tid, int(pid), int(attempt)): float(ts) for tid, pid, attempt, ts in (x.split() for x in raw_end)}
    report = judge(ids, done, counts, ledger, killer.kills, wall, slots=settings.concurrency, ended=ended or None)
    report.kill_phase = (round(kill_phase[0], 1), kill_phase[1])
    return report


def judge(ids: list[str], done: set[str], counts: dict[str, int], ledger: list[tuple[str, int, int]],
          kills: list[tuple[float, str, int]], wall: float, slots: int = 1,
          ended: dict[tuple[str, int, int], float] | None = None) -> ChaosReport:
    """Checks the promise: none lost; a task runs again only if its earlier run
    was cut off by a kill.

    An execution is explained as cut off when its process was killed and it is
    among the last `slots` executions that process started (a worker runs at
    most `slots` tasks at once, so a kill cuts off at most that many); every
    other execution of a task that is followed by another one is a violation.
    With `ended` (when each run's task function returned, by the ledger), a run
    is cut off when its process was killed before it returned, or less than
    two seconds after (its outcome not stored yet).
    """
    kill_time = {pid: ts for ts, _, pid in kills}
    killed = {pid for _, _, pid in kills}
    starts_of_pid: dict[int, list[int]] = {}
    for i, (_, pid, _) in enumerate(ledger):
        starts_of_pid.setdefault(pid, []).append(i)
    last_of_pid = {pid: set(idx[-slots:]) for pid, idx in starts_of_pid.items()}
    last_of_task: dict[str, int] = {}
    for i, (tid, _, _) in enumerate(ledger):
        last_of_task[tid] = i
    reruns, unexplained = 0, []
    for i, (tid, pid, attempt) in enumerate(ledger):
        if last_of_task[tid] == i:
            continue  # the execution whose outcome stands
        if ended is not None:
            end = ended.get((tid, pid, attempt))
            cut_off = pid in killed and (end is None or kill_time[pid] - end < 2.0)
        else:
            cut_off = pid in killed and i in last_of_pid[pid]
        if cut_off:
            reruns += 1
        else:
            why = "its process was not killed" if pid not in killed else "its process ran another task after it"
            unexplained.append(f"task {tid} ran again after attempt {attempt} by pid {pid}: {why}")
    tasks = len(ids)
    return ChaosReport(
        tasks=tasks, kills=len(kills), lost=tasks - len(done & set(ids)),
        run_twice_after_completion=len(unexplained), reruns_after_midrun_kill=reruns,
        wall_s=round(wall, 2), throughput=round(len(done) / wall, 1) if wall else 0.0,
        counts=dict(counts), unexplained=unexplained, kill_log=list(kills), ledger=ledger)


def write_report(report: ChaosReport, out: Path, settings: Settings | None = None,
                 env: dict[str, str] | None = None) -> list[str]:
    """The chaos notebook's input, under `out`: summary.json, kills.csv (ts,
    worker, pid), ledger.csv (task_id, pid, attempt; one row per execution in
    order), and with `settings`: logs/ (the run's event files) and export/
    (`yadtq export --out`, when that command exists). Returns notes on what
    was skipped."""
    notes: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(report.summary(), indent=2) + "\n")
    with open(out / "kills.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "worker", "pid"])
        w.writerows(report.kill_log)
    with open(out / "ledger.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "pid", "attempt"])
        w.writerows(report.ledger)
    if settings is None:
        return notes
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for path in sorted(Path(settings.log_dir).glob("*.events.jsonl")):
        shutil.copyfile(path, logs / path.name)
    notes += _export(settings, out / "export", env)
    return notes


def _export(settings: Settings, dest: Path, env: dict[str, str] | None) -> list[str]:
    from yadtq.cli import COMMANDS
    if "export" not in COMMANDS:
        return ["export/ skipped: this yadtq has no `export` command yet"]
    child_env = {k: v for k, v in (env or os.environ).items() if not k.startswith("YADTQ_")}
    child_env.update(settings.env())
    done = subprocess.run([sys.executable, "-m", "yadtq", "export", "--out", str(dest)], env=child_env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return [f"export/ failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"]
    return []

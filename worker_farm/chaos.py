"""A chaos run: a farm with respawn, a random worker killed with kill -9 every
few seconds, and a ledger of every execution to check the guarantees against.

Used by tests/test_chaos.py (short) and bench/chaos.py (long). Tasks are
`ledger_add` from a ledger module (tests/ledger_tasks.py), which appends
`<task id> <pid> <attempt>` to `<prefix>ledger` each time it runs.
"""

from __future__ import annotations

import csv
import json
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from worker_farm.supervisor import Farm, WorkerSpec
from yadtq.client import YADTQ
from yadtq.config import Settings


@dataclass
class ChaosReport:
    tasks: int
    kills: int
    lost: int
    run_twice_after_completion: int
    reruns_after_midrun_kill: int
    unexplained_reruns: int
    counts_add_up: bool
    wall_s: float
    throughput: float
    kill_log: list[tuple[float, str, int]] = field(default_factory=list, repr=False)
    ledger: list[tuple[str, int, int]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("kill_log", "ledger")}


def run_chaos(settings: Settings, tasks: int, workers: int = 4, standby: int = 1, kill_every: float = 2.0,
              max_minutes: float = 5.0, seed: int = 1, task_module: str = "ledger_tasks",
              pause: float = 0.01, say: Any = None) -> ChaosReport:
    rng = random.Random(seed)
    farm = Farm(settings, [WorkerSpec(f"W{i}", tasks=(task_module,)) for i in range(1, workers + 1)]
                + [WorkerSpec(f"S{i}", standby=True, tasks=(task_module,)) for i in range(1, standby + 1)],
                respawn=True, out=say or (lambda line: None), backoff_max=1.0)
    thread = threading.Thread(target=farm.run, daemon=True)
    kills: list[tuple[float, str, int]] = []
    with YADTQ(settings) as q:
        thread.start()
        started = time.monotonic()
        ids: list[str] = []
        for i in range(0, tasks, 1000):
            ids += q.submit_many([("ledger_add", [n, 1, pause]) for n in range(i, min(tasks, i + 1000))])
        deadline = started + max_minutes * 60
        next_kill = time.monotonic() + kill_every
        while q.backend.counts()["success"] < tasks and time.monotonic() < deadline:
            if time.monotonic() >= next_kill:
                victims = [c for c in farm.children.values()
                           if not c.spec.standby and c.respawn_at is None and c.proc.poll() is None]
                if victims:
                    victim = rng.choice(victims)
                    victim.proc.send_signal(signal.SIGKILL)
                    kills.append((time.time(), victim.spec.name, victim.proc.pid))
                next_kill = time.monotonic() + kill_every * rng.uniform(0.75, 1.25)
            time.sleep(0.05)
        wall = time.monotonic() - started
        farm.stop()
        thread.join(timeout=60)
        records = q.backend.get_many(ids)
        counts = q.backend.counts()
        r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        raw = r.lrange(settings.prefix + "ledger", 0, -1)
        r.close()
    ledger = [(tid, int(pid), int(attempt)) for tid, pid, attempt in (line.split() for line in raw)]
    return judge(ids, records, counts, ledger, kills, wall)


def judge(ids: list[str], records: list[Any], counts: dict[str, int], ledger: list[tuple[str, int, int]],
          kills: list[tuple[float, str, int]], wall: float) -> ChaosReport:
    """Checks the guarantees: none lost, none completed twice, every re-run explained by a kill."""
    runs: dict[str, list[int]] = {}
    for tid, pid, _ in ledger:
        runs.setdefault(tid, []).append(pid)
    killed = {pid for _, _, pid in kills}
    done = {rec.task_id for rec in records if rec.status == "success"}
    cut_off_by: dict[int, int] = {}
    twice_after = unexplained = reruns = 0
    for tid, pids in runs.items():
        for pid in pids[:-1]:  # every execution but the last was cut off...
            reruns += 1
            if pid in killed:  # ...by the kill of its process (at most one task in hand each)
                cut_off_by[pid] = cut_off_by.get(pid, 0) + 1
            else:
                twice_after += 1
    unexplained = sum(n - 1 for n in cut_off_by.values() if n > 1)
    return ChaosReport(
        tasks=len(ids), kills=len(kills), lost=len(set(ids) - done),
        run_twice_after_completion=twice_after, reruns_after_midrun_kill=reruns - twice_after,
        unexplained_reruns=unexplained, counts_add_up=sum(counts.values()) == len(ids),
        wall_s=round(wall, 2), throughput=round(len(done) / wall, 1) if wall else 0.0,
        kill_log=kills, ledger=ledger)


def write_report(report: ChaosReport, out: Path) -> None:
    """The chaos notebook's input: summary.json, kills.csv, ledger.csv."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(report.summary(), indent=2))
    with open(out / "kills.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "worker", "pid"])
        w.writerows(report.kill_log)
    with open(out / "ledger.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "pid", "attempt"])
        w.writerows(report.ledger)

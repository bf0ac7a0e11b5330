"""A chaos run: a farm with respawn, faults injected every few seconds, and a
ledger of every execution to judge the guarantees by.

Faults (worker_farm/chaos_faults.py): kill -9 and SIGSTOP of workers, kill -9 of
the broker, of Redis, or behind Sentinel of the current primary. With `monitor=True` a monitor
process runs too (it republishes what a broker restart lost) and must be alive
at the end. After each fault the run notes how long until the next task
completed: its time to recover.

Used by tests/system/test_chaos.py (short) and bench/chaos.py (long). Tasks are
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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker_farm.chaos_faults import Fault, Injector
from worker_farm.chaos_mix import ChaosMix, mix_modules, mix_worker_args
from worker_farm.chaos_quarantine import Requeuer, without_cause
from worker_farm.chaos_services import ServiceControl
from worker_farm.spec import WorkerSpec
from worker_farm.supervisor import Farm
from yadtq.broker.session import longest_session_s
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.store.connection import RedisError, connect_redis
from yadtq.task.status import Status

SUMMARY_KEYS = ("tasks", "kills", "lost", "run_twice_after_completion", "reruns_after_midrun_kill",
                "retries_after_failure", "quarantined", "wall_s", "throughput", "faults", "recover_s", "alive_at_end")


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
    # Runs that raised (no end in the ledger, their process alive) and ran again by the retry policy.
    retries_after_failure: int = 0
    kill_phase: tuple[float, int] = (0.0, 0)  # (seconds with kills, tasks succeeded by their end)
    unexplained: list[str] = field(default_factory=list, repr=False)  # why each violation counted
    kill_log: list[tuple[float, str, int]] = field(default_factory=list, repr=False)
    ledger: list[tuple[str, int, int]] = field(default_factory=list, repr=False)
    fault_log: list[Fault] = field(default_factory=list, repr=False)
    alive_at_end: bool = True  # every worker and the monitor running when the run ended
    mix_problems: dict[str, list[str]] = field(default_factory=dict)  # per mix, its broken promises
    # Quarantines seen (each requeued, so the task still had to succeed), and those with no cause
    # in the ledger (worker_farm/chaos_quarantine.py): these count in `lost`.
    quarantined: int = 0
    wrongly_quarantined: list[str] = field(default_factory=list)

    @property
    def faults(self) -> dict[str, int]:
        """How many faults of each kind were injected."""
        out: dict[str, int] = {}
        for f in self.fault_log:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    @property
    def recover_s(self) -> dict[str, float | None]:
        """The longest time to recover after a fault of each kind."""
        out: dict[str, float | None] = {}
        for f in self.fault_log:
            if f.recover_s is not None:
                out[f.kind] = max(out.get(f.kind) or 0.0, f.recover_s)
            else:
                out.setdefault(f.kind, None)
        return out

    @property
    def counts_add_up(self) -> bool:
        return sum(self.counts.values()) == self.tasks

    def summary(self) -> dict[str, Any]:
        """The figures, as written to summary.json."""
        return {k: getattr(self, k) for k in SUMMARY_KEYS}


def run_chaos(settings: Settings, tasks: int, workers: int = 4, standby: int = 1, kill_every: float = 2.0,
              max_minutes: float = 5.0, seed: int = 1, task_module: str = "ledger_tasks",
              pause: float = 0.004, say: Callable[[str], None] | None = None, drain_minutes: float = 0.0,
              progress: Callable[[dict[str, int], int], None] | None = None, faults: tuple[str, ...] = ("kill",),
              services: ServiceControl | None = None, monitor: bool = False, mixed: bool = False,
              stop_for: float = 0.0, pauses: Sequence[float] | None = None,
              mixes: Sequence[ChaosMix] = ()) -> ChaosReport:
    """Submits `tasks` ledger tasks, injects `faults` while they run (every
    ~`kill_every` s, for at most `max_minutes`), then lets the farm finish
    without faults for at most `drain_minutes`, stops it and judges. `mixed`
    varies the tasks' work (mostly quick, some 20x and 100x `pause`);
    `pauses`, when given, are task durations drawn at random per task.
    `mixes` add work of other kinds beside the ledger tasks (worker_farm/chaos_mix.py):
    the run also waits for them, and the report keeps each one's broken promises.
    Children inherit this process's environment: PYTHONPATH must let them
    import `task_module` and the mixes' modules."""
    rng = random.Random(seed)
    modules, extra = (task_module, *mix_modules(mixes)), mix_worker_args(mixes)
    specs = [WorkerSpec(f"W{i}", tasks=modules, args=extra) for i in range(1, workers + 1)]
    specs += [WorkerSpec(f"S{i}", standby=True, tasks=modules, args=extra) for i in range(1, standby + 1)]
    # A worker is killed every ~8 s on average: keep its respawn quick.
    farm = Farm(settings, specs, respawn=True, out=say or (lambda line: None), backoff_max=1.0)
    thread = threading.Thread(target=farm.run, name="chaos-farm", daemon=True)
    injector = Injector(farm, faults, kill_every, rng, services,
                        stop_for or settings.lease + longest_session_s(settings))
    mon = _start_monitor(settings) if monitor else None
    if mon is not None:
        _wait_connected(settings, mon)  # before any fault: a monitor cut off at its start exits (RET_CONNECT)
    alive = True
    with YADTQ(settings) as q:
        requeuer = Requeuer(q)
        thread.start()
        try:
            started = time.monotonic()
            ids: list[str] = []
            for i in range(0, tasks, 1000):
                ids += q.submit_many([("ledger_add", [n, 1, rng.choice(pauses) if pauses else _work(rng, pause, mixed)])
                                      for n in range(i, min(tasks, i + 1000))])
            for mix in mixes:
                mix.submit(q, rng)
            pending = list(ids)
            last_report = started
            kill_until = started + max_minutes * 60
            # On a loaded machine a broker restart can take most of a minute: the faults go on past
            # `max_minutes` (up to twice it) until each kind came up once.
            kill_limit = started + 2 * max_minutes * 60
            drain_until = kill_until + drain_minutes * 60
            kill_phase = (0.0, 0)
            counts: dict[str, int] = {}
            seen: dict[int, int] = {}
            while True:
                counts = _counts(q) or counts
                if counts.get(Status.FAILED, 0) or requeuer.owes:
                    requeuer.sweep(pending)
                now = time.monotonic()
                if now >= kill_until and now < kill_limit and not injector.every_kind_came:
                    kill_until = now + 0.5
                    drain_until = kill_until + drain_minutes * 60
                if now < kill_until or not kill_phase[0]:
                    kill_phase = (now - started, counts.get(Status.SUCCESS, 0))
                injector.note_progress(counts.get(Status.SUCCESS, 0), seen)
                finished = counts.get(Status.SUCCESS, 0) >= tasks and _all_ended(q, pending, mixes)
                if now >= drain_until or (finished and (injector.every_kind_came or now >= kill_limit)):
                    break
                if now < kill_until:
                    injector.tick()
                else:
                    injector.resume_all()
                if progress and now - last_report >= 10:
                    progress(counts, len(injector.faults))
                    last_report = now
                time.sleep(0.05)
            wall = time.monotonic() - started
            injector.resume_all()
            alive = _all_alive(farm, workers + standby) and (mon is None or mon.poll() is None)
        finally:
            injector.resume_all()
            farm.stop()
            thread.join(timeout=farm.grace + 30)
            if mon is not None:
                _stop(mon)
        records = [rec for i in range(0, len(ids), 5000) for rec in q.backend.get_many(ids[i:i + 5000])]
        # The ledger tasks' own counts: the mixes' tasks are judged by the mixes.
        counts = dict(Counter(str(rec.status) for rec in records))
        broken = {mix.name: mix.check(q) for mix in mixes}
    killer = injector
    r = connect_redis(settings)
    try:
        # A test/bench-sized list read once at the end (not a dashboard path).
        raw = r.lrange(settings.prefix + "ledger", 0, -1)
        raw_end = r.lrange(settings.prefix + "ledger_end", 0, -1)
    finally:
        r.close()
    ledger = [(str(tid), int(pid), int(attempt)) for tid, pid, attempt in (str(line).split() for line in raw)]
    done = {rec.task_id for rec in records if rec.status == Status.SUCCESS}
    ended = {(str(tid), int(pid), int(attempt)): float(ts)
             for tid, pid, attempt, ts in (str(x).split() for x in raw_end)}
    cut = {f.pid for f in injector.faults if f.kind == "stop"}
    report = judge(ids, done, counts, ledger, killer.kills, wall, slots=settings.concurrency, ended=ended or None,
                   stopped=cut, stored=_stored_outcomes(Path(settings.log_dir)),
                   retried=_stored_outcomes(Path(settings.log_dir), ("task_retried",)))
    # A quarantine the ledger does not explain failed a task for nothing: it counts as lost.
    report.wrongly_quarantined = without_cause(requeuer.times, ledger, settings.max_lost_runs)
    report.quarantined = sum(requeuer.times.values())
    report.lost += len(report.wrongly_quarantined)
    report.kill_phase = (round(kill_phase[0], 1), kill_phase[1])
    report.fault_log = injector.faults
    report.alive_at_end = alive
    report.mix_problems = {name: lines for name, lines in broken.items() if lines}
    return report


def _stored_outcomes(log_dir: Path, events: tuple[str, ...] = ("task_succeeded", "task_retried", "task_failed")
                     ) -> set[tuple[str, int, int]]:
    """(task id, pid, attempt) of every run whose outcome a worker stored, by its event log
    (an event written only after the store; a kill -9 loses at most the last ~100 ms);
    `events` picks the outcomes (("task_retried",): the runs sent back to the queue to run again)."""
    out: set[tuple[str, int, int]] = set()
    quoted = tuple(f'"{name}"' for name in events)
    for path in log_dir.glob("worker-*.events.jsonl"):
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not any(name in line for name in quoted):
                    continue
                try:
                    e = json.loads(line)
                    out.add((str(e["task_id"]), int(e["pid"]), int(e["attempt"])))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill
    return out


def _work(rng: random.Random, pause: float, mixed: bool) -> float:
    if not mixed:
        return pause
    roll = rng.random()
    return pause * (100 if roll < 0.02 else 20 if roll < 0.15 else 1)


def _all_ended(q: YADTQ, pending: list[str], mixes: Sequence[ChaosMix]) -> bool:
    """Every ledger task in `pending` succeeded (read per task: the counts include the mixes'
    tasks; `pending` keeps only those not succeeded yet) and every mix ended."""
    try:
        done = {rec.task_id for i in range(0, len(pending), 5000)
                for rec in q.backend.get_many(pending[i:i + 5000]) if rec.status == Status.SUCCESS}
        left = [tid for tid in pending if tid not in done]  # a missing record is not ended either
        pending[:] = left
        return not left and all(mix.finished(q) for mix in mixes)
    except RedisError:
        return False  # Redis restarting under a fault: ask again on the next turn


def _counts(q: YADTQ) -> dict[str, int] | None:
    try:
        return q.backend.counts()
    except RedisError:
        return None  # Redis is being restarted: keep the last figures


def _all_alive(farm: Farm, expected: int) -> bool:
    """Every worker running now (a respawn in progress counts once it is back)."""
    deadline = time.monotonic() + 30
    while len(farm.running()) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return len(farm.running()) == expected


def _start_monitor(settings: Settings) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
    env.update(settings.env())
    Path(settings.log_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(settings.log_dir) / "monitor.out", "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "yadtq", "monitor"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_connected(settings: Settings, mon: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Waits until the monitor has connected to Redis and the broker (its `connected` event)."""
    events = Path(settings.log_dir) / "monitor.events.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events.exists() and '"connected"' in events.read_text(errors="replace"):
            return
        if mon.poll() is not None:
            raise RuntimeError(f"the monitor exited at its start (code {mon.returncode}); see monitor.out")
        time.sleep(0.1)
    raise RuntimeError(f"the monitor did not connect within {timeout:g}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def judge(ids: list[str], done: set[str], counts: dict[str, int], ledger: list[tuple[str, int, int]],
          kills: list[tuple[float, str, int]], wall: float, slots: int = 1,
          ended: dict[tuple[str, int, int], float] | None = None, stopped: set[int] | None = None,
          stored: set[tuple[str, int, int]] | None = None,
          retried: set[tuple[str, int, int]] | None = None) -> ChaosReport:
    """Checks the promise: none lost; a task runs again only if its earlier run
    was cut off by a fault of its process.

    An execution is explained as cut off when its process was killed and it is
    among the last `slots` executions that process started (a worker runs at
    most `slots` tasks at once, so a kill cuts off at most that many), or when
    its process was stopped (SIGSTOP: its claims lapse while it sleeps, and its
    late outcome is fenced out); every other execution of a task that is
    followed by another one is a violation. With `ended` (when each run's task
    function returned, by the ledger), a run of a killed process is cut off
    when the kill came before it returned, or less than two seconds after (its
    outcome not stored yet; with `stored`, the runs whose outcome the workers'
    event logs say was stored, a run of a killed process is cut off when its
    outcome was not stored); a run with no end whose process was neither
    killed nor stopped raised (the ledger task writes to Redis, which the
    chaos restarts) and its retry is the policy at work, counted apart; so is, with `retried`
    (the runs whose event logs say they were sent back to run again), a run that raised after
    its end was written (the end's reply lost to a Redis restart: "Connection closed by server").
    """
    kill_time = {pid: ts for ts, _, pid in kills}
    killed = set(kill_time)
    stopped = stopped or set()
    starts_of_pid: dict[int, list[int]] = {}
    for i, (_, pid, _) in enumerate(ledger):
        starts_of_pid.setdefault(pid, []).append(i)
    last_of_pid = {pid: set(idx[-max(slots, 1):]) for pid, idx in starts_of_pid.items()}
    last_of_task: dict[str, int] = {}
    for i, (tid, _, _) in enumerate(ledger):
        last_of_task[tid] = i
    reruns, after_failure, unexplained = 0, 0, []
    for i, (tid, pid, attempt) in enumerate(ledger):
        if last_of_task[tid] == i:
            continue  # the execution whose outcome stands
        if retried is not None and (tid, pid, attempt) in retried:
            after_failure += 1  # it raised, and the worker stored a retry: the next run is the policy's
            continue
        if ended is not None:
            end = ended.get((tid, pid, attempt))
            if stored is not None:  # killed before its outcome was stored
                cut_off = pid in killed and (tid, pid, attempt) not in stored
            else:
                cut_off = pid in killed and (end is None or kill_time[pid] - end < 2.0)
            if end is None and not cut_off and pid not in stopped:
                after_failure += 1  # the task raised (its Redis went away mid-run): retried by its policy
                continue
        else:
            cut_off = pid in killed and i in last_of_pid[pid]
        if cut_off or pid in stopped:
            reruns += 1
        else:
            why = "its process was not killed" if pid not in killed else "its process ran other tasks after it"
            unexplained.append(f"task {tid} ran again after attempt {attempt} by pid {pid}: {why}")
    tasks = len(ids)
    return ChaosReport(
        tasks=tasks, kills=len(kills), lost=tasks - len(done & set(ids)),
        run_twice_after_completion=len(unexplained), reruns_after_midrun_kill=reruns,
        retries_after_failure=after_failure,
        wall_s=round(wall, 2), throughput=round(len(done) / wall, 1) if wall else 0.0,
        counts=dict(counts), unexplained=unexplained, kill_log=list(kills), ledger=ledger)


def write_report(report: ChaosReport, out: Path, settings: Settings | None = None,
                 env: dict[str, str] | None = None) -> list[str]:
    """The chaos notebook's input, under `out`: summary.json, kills.csv (ts,
    worker, pid), ledger.csv (task_id, pid, attempt; one row per execution in
    order), and with `settings`: logs/ (the run's event and log files) and export/
    (`yadtq export --out`, when that command exists). Returns notes on what
    was skipped."""
    notes: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(report.summary(), indent=2) + "\n")
    with open(out / "kills.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "worker", "pid"])
        w.writerows(report.kill_log)
    with open(out / "faults.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "kind", "target", "pid", "ended", "recover_s"])
        w.writerows((x.ts, x.kind, x.target, x.pid, round(x.ended, 3), x.recover_s) for x in report.fault_log)
    with open(out / "ledger.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "pid", "attempt"])
        w.writerows(report.ledger)
    if settings is None:
        return notes
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for pattern in ("*.events.jsonl", "*.log", "*.out"):
        for path in sorted(Path(settings.log_dir).glob(pattern)):
            shutil.copyfile(path, logs / path.name)
    notes += _export(settings, out / "export", env)
    return notes


def _export(settings: Settings, dest: Path, env: dict[str, str] | None) -> list[str]:
    child_env = {k: v for k, v in (env or os.environ).items() if not k.startswith("YADTQ_")}
    child_env.update(settings.env())
    done = subprocess.run([sys.executable, "-m", "yadtq", "export", "--out", str(dest)], env=child_env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return [f"export/ failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"]
    return []

"""CPU per task: `add` end to end on 2 worker processes, CPU seconds of every process divided by tasks.

    .venv/bin/python bench/cpu_per_task.py [--tasks 20000] [--workers 2] [--runs 3] [--redis fsync_always]
                                           [--commandstats 15]

Counts user + system time (from /proc) of the client (this process), each worker, the broker
(the embedded broker's front and tansu) and Redis, from the first submit to the last success
stored, after every worker has run a warm-up task. Prints microseconds per task per process
group and in total (medians of --runs runs), with the tasks/s and the load. `--commandstats N` also
prints, per run, Redis's N costliest commands over the same span (INFO commandstats deltas per task,
the commands Lua scripts call included; bench/redis_profile.py) and its INFO cpu.

CPU time depends less than wall time on how loaded the shared machine is, but not little: a run
that lasts longer pays more of the processes' time-driven work (polls, timers, heartbeats; about
0.1 s of CPU per second in all), and smaller steps carry fewer tasks each. Compare figures taken
at similar tasks/s; bench/hot_path.py measures the per-task Python paths in one process, which
load hardly moves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench import redis_profile
from bench.common import load, private_services, save, spawn_workers, stop, wait_for_count, workers_serving
from yadtq.client.client import YADTQ

PARTITIONS = 4  # as in bench/scale.py, so the figures sit beside its 2-worker row
BATCH = 2000
TICK = os.sysconf("SC_CLK_TCK")
GROUPS = ("client", "workers", "broker", "redis")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _group(cmd: str) -> str | None:
    if " worker " in f"{cmd} " and "yadtq" in cmd:
        return "workers"
    if "redis-server" in cmd or "valkey-server" in cmd:
        return "redis"
    if "broker_front" in cmd or "tansu" in cmd or " broker --listener-url" in cmd or " kafka.Kafka " in cmd:
        return "broker"
    return None


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU seconds) of this process and every descendant the groups know."""
    me = os.getpid()
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            stats[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, tuple[str, float]] = {me: ("client", stats[me][1])}
    todo = list(children.get(me, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        group = _group(_cmdline(pid))
        if group is not None:
            out[pid] = (group, stats[pid][1])
    return out


def _py_spy(pids: dict[str, int], out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy (from PATH) sampling each named process into `out`/<name>.txt (collapsed stacks;
    `--nonblocking`: the process is not stopped to be sampled)."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise SystemExit("--py-spy needs py-spy on PATH (pip install py-spy)")
    out.mkdir(parents=True, exist_ok=True)
    # --gil: only samples of a thread holding the GIL, so the profile is of CPU, not of waiting.
    cmd = [exe, "record", "--nonblocking", "--gil", "--format", "raw", "--rate", "200"]
    return [subprocess.Popen([*cmd, "-p", str(pid), "-o", str(out / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in pids.items()]


def one_run(n: int, workers: int, redis: str = "fsync_always", py_spy: Path | None = None,
            commandstats: int = 0, say: Any = print) -> dict[str, float]:
    """µs of CPU per task per group and in total, with the tasks/s of the run; `commandstats` > 0:
    says that many of Redis's costliest commands of the run (bench/redis_profile.py)."""
    with private_services(partitions=PARTITIONS, redis=redis) as s:
        procs = spawn_workers(s, workers)
        spies: list[subprocess.Popen[bytes]] = []
        try:
            with YADTQ(s) as q:
                workers_serving(q, workers)
                before = q.backend.counts()["success"]
                if py_spy is not None:
                    named = {f"worker-B{i}": p.pid for i, p in enumerate(procs, 1)} | {"client": os.getpid()}
                    spies = _py_spy(named, py_spy)
                    time.sleep(1)  # py-spy attached
                stats0 = redis_profile.snapshot(s.redis_url) if commandstats else None
                cpu0 = cpu_by_process()
                t0 = time.perf_counter()
                for i in range(0, n, BATCH):
                    q.submit_many([("add", [j, 1]) for j in range(i, min(n, i + BATCH))])
                wait_for_count(lambda: q.backend.counts()["success"], n + before, f"{n:,} add", interval=0.1)
                wall = time.perf_counter() - t0
                cpu1 = cpu_by_process()
                if stats0 is not None:
                    say(redis_profile.describe(stats0, redis_profile.snapshot(s.redis_url), n, commandstats))
        finally:
            for spy in spies:  # SIGINT: py-spy writes what it sampled
                spy.send_signal(2)
            for spy in spies:
                spy.wait(30)
            stop(procs)
    out = _by_group(cpu0, cpu1)
    figures = {f"{g}_us": out[g] / n * 1e6 for g in GROUPS}
    figures["total_us"] = sum(out.values()) / n * 1e6
    figures["tasks_per_s"] = n / wall
    return figures


def _by_group(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    out = {g: 0.0 for g in GROUPS}
    for pid, (group, secs) in after.items():
        out[group] += secs - (before[pid][1] if pid in before else 0.0)
    return out


def run(n: int = 20_000, workers: int = 2, runs: int = 3, redis: str = "fsync_always",
        say: Any = print, py_spy: Path | None = None, commandstats: int = 0) -> dict[str, dict[str, float]]:
    """Medians (with min and max) over `runs` runs, and the load average after each."""
    results = []
    for _ in range(runs):
        r = one_run(n, workers, redis, py_spy, commandstats, say)
        r["load"] = load()
        say("  cpu per task: " + describe(r), flush=True)
        results.append(r)
    return {k: {"median": statistics.median(v := [r[k] for r in results]), "min": min(v), "max": max(v),
                "runs": len(v)} for k in results[0]}


def describe(r: dict[str, Any]) -> str:
    def get(k: str) -> float:
        v = r[k]
        return float(v["median"] if isinstance(v, dict) else v)
    parts = ", ".join(f"{g} {get(f'{g}_us'):.0f}" for g in GROUPS)
    return (f"{get('total_us'):.0f} µs/task ({parts}); {get('tasks_per_s'):,.0f} tasks/s, "
            f"load {get('load'):.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--redis", default="fsync_always", choices=("fsync_always", "no_persistence"))
    p.add_argument("--save", metavar="NAME", help="also write bench/results/NAME.json")
    p.add_argument("--py-spy", type=Path, metavar="DIR",
                   help="profile the client and each worker with py-spy (collapsed stacks in DIR; adds CPU)")
    p.add_argument("--commandstats", type=int, default=0, metavar="N",
                   help="print Redis's N costliest commands per run (INFO commandstats deltas per task)")
    args = p.parse_args(argv)
    fig = run(args.tasks, args.workers, args.runs, args.redis, py_spy=args.py_spy, commandstats=args.commandstats)
    print("median: " + describe(fig))
    if args.save:
        print(f"wrote {save(args.save, {'cpu_per_task': fig, 'tasks': args.tasks, 'workers': args.workers})}")


if __name__ == "__main__":
    main()

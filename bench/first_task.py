"""From `yadtq run` (what `make run` execs) to the first `yadtq submit add 1 2 --wait` succeeding.

    .venv/bin/python bench/first_task.py [--runs 3] [--broker embedded|kafka] [--json]

Each run starts the whole stack (the Procfile: services, monitor, dashboard, farm, API) on private
ports and a fresh data folder, as a user's first `make run` on an installed venv does. A user's
second terminal is played by this process: it waits until the broker and Redis serve (the probes
`yadtq wait` uses, polled every 20 ms, so the figure is not this script's own polling), then runs
`yadtq submit add 1 2 --wait` once. Phases are read from the stack's output as it comes, each
stamped with the seconds since the start:

    services  `yadtq run` printed "services up" (broker and Redis started)
    started   the farm started its first worker process
    joined    the first worker was given partitions (its "assigned partitions [...]" line)
    task      the submit --wait exited 0 with "success"
    cpu       CPU seconds the stack had used by then (all its processes): what a loaded machine stretches

Medians of --runs runs, with the 1-minute load average at each run's start (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path[:0] = [str(ROOT)]

from yadtq.config import Settings  # noqa: E402
from yadtq.ops.ports import free_port  # noqa: E402
from yadtq.ops.services import broker_ready  # noqa: E402
from yadtq.store.connection import redis_ready  # noqa: E402

PHASES = {
    "services": r"services up",
    "started": r"\[farm\] started worker ",
    "joined": r"assigned partitions \[\d",
}
ORDER = ("services", "submitted", "started", "joined", "task")


def _env(base: Path, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
    env.update({
        "YADTQ_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "YADTQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "YADTQ_DASHBOARD_PORT": str(free_port()), "YADTQ_API_ADDRESS": f"127.0.0.1:{free_port()}",
        "YADTQ_DATA_DIR": str(base / "data"), "YADTQ_LOG_DIR": str(base / "logs"), "YADTQ_BROKER": broker,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # The checkout this script sits in, also when the venv has another one installed.
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    })
    return env


def _stat(pid: int) -> tuple[int, float, str] | None:
    """(parent pid, CPU seconds of the process and its reaped children, short command line)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return None
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    words = [w.decode(errors="replace") for w in argv if w and not w.startswith(b"-")]
    name = " ".join(Path(w).name for w in words[:4])
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"), name


def cpu_of_tree(root: int) -> dict[str, float]:
    """CPU seconds so far of each live process under `root` (the `yadtq wait`s that ended are in
    their parent's figure: the shell that then became the program)."""
    stats = {int(d.name): s for d in Path("/proc").iterdir() if d.name.isdigit() and (s := _stat(int(d.name)))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found[f"{stats[pid][2]} [{pid}]"] = round(stats[pid][1], 2)
        todo += children.get(pid, [])
    return found


def load() -> float:
    return round(os.getloadavg()[0], 2)


def one_run(broker: str = "embedded", timeout: float = 120.0) -> dict[str, Any]:
    """The seconds from start to each phase of one run (missing: the phase never came)."""
    with tempfile.TemporaryDirectory(prefix="yadtq-first-") as tmp:
        env = _env(Path(tmp), broker)
        settings = Settings.from_env(env)
        at: dict[str, float] = {}
        lines: list[str] = []
        out: dict[str, Any] = {"load": load()}
        t0 = time.monotonic()
        stack = subprocess.Popen([sys.executable, "-m", "yadtq", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def read() -> None:
            assert stack.stdout is not None
            for line in stack.stdout:
                now = time.monotonic() - t0
                lines.append(f"{now:6.2f} {line.rstrip()}")
                for phase, pattern in PHASES.items():
                    if phase not in at and re.search(pattern, line):
                        at[phase] = now

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = t0 + timeout
            while not (broker_ready(settings)[0] and redis_ready(settings)[0]):
                if time.monotonic() > deadline or stack.poll() is not None:
                    raise RuntimeError("the services did not come up:\n" + "\n".join(lines))
                time.sleep(0.02)
            at["submitted"] = time.monotonic() - t0
            sub = subprocess.run([sys.executable, "-m", "yadtq", "submit", "add", "1", "2", "--wait"], cwd=ROOT,
                                 env=env, capture_output=True, text=True, timeout=timeout)
            if sub.returncode != 0 or "success" not in sub.stdout:
                raise RuntimeError(f"submit --wait failed ({sub.returncode}): {sub.stdout}{sub.stderr}")
            at["task"] = time.monotonic() - t0
            cpu = cpu_of_tree(stack.pid)
            out["cpu"] = round(sum(cpu.values()), 1)
            out["cpu_by_process"] = cpu
            waited = re.search(r"waited ([\d.]+)s", sub.stdout + sub.stderr)
            out["said_joining"] = "joining" in sub.stdout + sub.stderr
            if waited:
                out["waited"] = float(waited[1])
        finally:
            # A stack that ended by itself is gone with its group: the error above says why, not this.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(stack.pid, signal.SIGINT)
            try:
                stack.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(stack.pid, signal.SIGKILL)
                stack.wait()
            reader.join(timeout=10)
        out.update({k: round(at[k], 2) for k in ORDER if k in at})
        out["lines"] = lines
        return out


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med: dict[str, Any] = {}
    for key in (*ORDER, "cpu", "load"):
        values = [r[key] for r in runs if key in r]
        if values:
            med[key] = {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}
    return med


def for_bench(broker: str, runs: int) -> dict[str, dict[str, float]]:
    """bench/run.py's "start" figures: seconds to the first task and to the group's join, CPU seconds."""
    done = [one_run(broker) for _ in range(runs)]
    keys = {"first_task_s": "task", "services_s": "services", "joined_s": "joined", "cpu_s": "cpu", "load": "load"}
    return {name: {"median": statistics.median(r[k] for r in done), "min": min(r[k] for r in done),
                   "max": max(r[k] for r in done), "runs": len(done)} for name, k in keys.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--broker", default="embedded", choices=["embedded", "kafka"])
    p.add_argument("--json", action="store_true", help="print the results as JSON (lines included)")
    p.add_argument("--lines", action="store_true", help="print each run's stamped output")
    args = p.parse_args(argv)
    runs = []
    for i in range(args.runs):
        r = one_run(args.broker)
        runs.append(r)
        phases = "  ".join(f"{k} {r[k]:.2f}" for k in ORDER if k in r)
        print(f"run {i + 1}: {phases}  cpu {r.get('cpu')}  (load {r['load']})", flush=True)
        if args.lines:
            print("\n".join(r["lines"]), flush=True)
            print(json.dumps(r.get("cpu_by_process"), indent=1), flush=True)
    result = {"broker": args.broker, "runs": [{k: v for k, v in r.items() if k not in ("lines", "cpu_by_process")}
                                              for r in runs],
              "median": summary(runs)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print("median: " + "  ".join(f"{k} {v['median']:.2f}" for k, v in result["median"].items()))
    return result


if __name__ == "__main__":
    main()

"""Shared pieces of the benchmarks: private services, workers, statistics, machine load, results."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from yadtq.config import Settings  # noqa: E402
from yadtq.ops.ports import free_port  # noqa: E402
from yadtq.ops.services import start_broker, start_redis  # noqa: E402

# A broker starter: given a scratch directory, starts a broker and returns its
# bootstrap address and the processes to stop afterwards. New brokers (Apache
# Kafka) register here; `run.py --broker NAME` then measures YADTQ on it.
BrokerStarter = Callable[[Path], tuple[str, list[subprocess.Popen[bytes]]]]


def _embedded(base: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    port = free_port()
    return f"127.0.0.1:{port}", [start_broker("127.0.0.1", port, base / "logs")]


BROKERS: dict[str, BrokerStarter] = {"embedded": _embedded}
# Redis settings the end-to-end figures are taken at: YADTQ's own (an append-only file synced on
# every write, `appendfsync always`), and none (what Dramatiq and arq run on by default). The later
# `--appendonly no` overrides start_redis's `yes`.
REDIS_SETTINGS: dict[str, tuple[str, ...]] = {"fsync_always": (), "no_persistence": ("--appendonly", "no")}
# The broker `private_services()` starts when none is named: run.py sets it per
# column, so the workloads in yadtq_bench.py follow without a parameter each.
current_broker = "embedded"
# Settings every `private_services()` on the embedded broker takes on top of the defaults: run.py's
# `--quick` (the smoke test) sets a 1.5 s session timeout, as the test suite does. The embedded broker
# holds each JoinGroup for about half the session timeout, and every section forms a group.
settings_overrides: dict[str, Any] = {}


def use_broker(name: str) -> None:
    global current_broker
    if name not in BROKERS:
        raise ValueError(f"unknown broker {name!r} (known: {', '.join(BROKERS)})")
    current_broker = name


def spawn_workers(settings: Settings, n: int, extra_env: dict[str, str] | None = None,
                  tasks: Sequence[str] = ()) -> list[subprocess.Popen[bytes]]:
    """`n` worker processes named B1..Bn; `settings.concurrency` reaches them as YADTQ_CONCURRENCY
    (an env var, not the flag, so the same call works on an engine that has no --concurrency)."""
    return [spawn_worker(settings, f"B{i}", extra_env, tasks) for i in range(1, n + 1)]


def spawn_worker(settings: Settings, name: str, extra_env: dict[str, str] | None = None,
                 tasks: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """One worker process called `name` (a restart under the same name keeps its group membership)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
    env.update(settings.env())
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    cmd = [sys.executable, "-m", "yadtq", "worker"]
    for module in tasks:
        cmd += ["--tasks", module]
    return subprocess.Popen([*cmd, "--name", name], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(procs: Sequence[subprocess.Popen[Any]]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def wait_until(cond: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g}s")
        time.sleep(interval)


class Stalled(RuntimeError):
    """A benchmark's count stopped moving: the system under test stalled (the run reports it and goes on)."""


def wait_for_count(count: Callable[[], int], target: int, what: str, stall_s: float = 60.0,
                   timeout: float = 900.0, interval: float = 0.05) -> None:
    """Until `count()` reaches `target`; raises `Stalled` when it has not moved for `stall_s`
    (a stalled engine costs a minute, not the whole timeout)."""
    start = last_move = time.monotonic()
    last = count()
    while last < target:
        time.sleep(interval)
        now, value = time.monotonic(), count()
        if value != last:
            last, last_move = value, now
        elif now - last_move > stall_s:
            raise Stalled(f"{what}: stuck at {last:,}/{target:,} for {stall_s:g} s")
        if now - start > timeout:
            raise Stalled(f"{what}: {last:,}/{target:,} after {timeout:g} s")


def attempt(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """`fn`'s figures, or {"error": ...} when it failed: one failed setup must not lose the others."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # reported in the table and the exit code, never hidden
        print(f"  ERROR in {getattr(fn, '__name__', fn)}: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}


def workers_serving(q: Any, processes: int, task: str = "add", args: Sequence[Any] = (0, 0), batch: int = 16,
                    timeout: float = 60) -> int:
    """Submits batches of `task` until each worker B1..B<processes> has run one, so every process
    holds partitions before a clock starts; returns how many had by the deadline (an engine may
    leave a late joiner without partitions: that shows in the figures instead of stopping the run)."""
    names = {f"B{i}" for i in range(1, processes + 1)}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not names <= seen and time.monotonic() < deadline:
        ids = q.submit_many([(task, list(args))] * batch)
        seen.update(r.worker or "" for r in wait_until(functools.partial(_all_done, q, ids), 60, 0.05))
        if not names <= seen:
            time.sleep(0.3)
    return len(names & seen)


def _all_done(q: Any, ids: list[str]) -> list[Any] | None:
    recs = q.backend.get_many(ids)
    return recs if len(recs) == len(ids) and all(r.done for r in recs) else None


def load() -> float:
    """The 1-minute load average: the machine is shared, so every figure carries it."""
    return round(os.getloadavg()[0], 2)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median of several runs with min and max: the machine is shared and noisy."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def repeat(runs: int, fn: Callable[..., dict[str, float]], *args: Any, **kwargs: Any) -> dict[str, dict[str, float]]:
    """`fn` run `runs` times: each figure summarized, plus the load average after each run."""
    results = []
    for _ in range(runs):
        r = dict(fn(*args, **kwargs))
        r["load"] = load()
        results.append(r)
    return {k: summarize([r[k] for r in results]) for k in results[0]}


def save(name: str, data: dict[str, Any], path: Path | None = None) -> Path:
    """Writes bench/results/<name>.json, or `path` when given."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"at": time.strftime("%Y-%m-%d %H:%M:%S"), **data}, indent=2))
    return path


@contextlib.contextmanager
def private_redis(redis: str = "fsync_always", prefix: str = "bench-redis-") -> Iterator[str]:
    """The URL of a fresh Redis on a free port with the named REDIS_SETTINGS (the peers' benchmarks)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    proc = start_redis("127.0.0.1", port, base / "data", base / "logs", extra_args=REDIS_SETTINGS[redis])
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop([proc])
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def private_services(broker: str | None = None, redis: str = "fsync_always", **overrides: Any) -> Iterator[Settings]:
    """Settings for a fresh broker (`current_broker` unless named) and Redis (with the named
    REDIS_SETTINGS) on free ports."""
    with private_services_and_pids(broker, redis, **overrides) as (settings, _):
        yield settings


@contextlib.contextmanager
def private_services_and_pids(broker: str | None = None, redis: str = "fsync_always",
                              **overrides: Any) -> Iterator[tuple[Settings, dict[str, list[int]]]]:
    """As `private_services`, with the pids of the processes started: {"broker": [...], "redis": [pid]}
    (the scaling benchmark reads their CPU time)."""
    base = Path(tempfile.mkdtemp(prefix="yadtq-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bootstrap, procs = BROKERS[broker or current_broker](base)
        # The short session is for the embedded broker's joins; Apache Kafka refuses one under its 6 s minimum.
        quick = settings_overrides if (broker or current_broker) == "embedded" else {}
        pids = {"broker": [p.pid for p in procs]}
        rport = free_port()
        procs.append(start_redis("127.0.0.1", rport, base / "data", base / "logs",
                                 extra_args=REDIS_SETTINGS[redis]))
        pids["redis"] = [procs[-1].pid]
        u = uuid.uuid4().hex[:8]
        yield Settings(kafka_bootstrap=bootstrap, redis_url=f"redis://127.0.0.1:{rport}/0",
                       topic=f"bench-{u}", heartbeat_topic=f"hb-{u}", group=f"g-{u}", prefix=f"b{u}:",
                       log_dir=str(base / "logs"), data_dir=str(base / "data")
                       ).replace(**{**quick, **overrides}), pids
    finally:
        stop(procs)
        shutil.rmtree(base, ignore_errors=True)

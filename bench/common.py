"""Shared pieces of the benchmarks: private services, workers, statistics, results."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from yadtq.config import Settings  # noqa: E402


def spawn_workers(settings: Settings, n: int, extra_env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
    env.update(settings.env())
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    return [subprocess.Popen([sys.executable, "-m", "yadtq", "worker", "--name", f"B{i}"], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(1, n + 1)]


def stop(procs: list[subprocess.Popen]) -> None:
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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(samples: list[float]) -> dict[str, float]:
    """Median of several runs with min and max: the machine is shared and noisy."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def save(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"at": time.strftime("%Y-%m-%d %H:%M:%S"), **data}, indent=2))


def private_services(**overrides: Any):
    """Context manager: Settings for a fresh tansu broker and Redis on free ports."""
    import contextlib
    import tempfile
    import uuid

    from yadtq.services import free_port, start_broker, start_redis

    @contextlib.contextmanager
    def run():
        base = Path(tempfile.mkdtemp(prefix="yadtq-bench-"))
        kport, rport = free_port(), free_port()
        broker = start_broker("127.0.0.1", kport, base / "logs")
        redis_proc = start_redis("127.0.0.1", rport, base / "data", base / "logs")
        u = uuid.uuid4().hex[:8]
        try:
            yield Settings(kafka_bootstrap=f"127.0.0.1:{kport}", redis_url=f"redis://127.0.0.1:{rport}/0",
                           topic=f"bench-{u}", heartbeat_topic=f"hb-{u}", group=f"g-{u}", prefix=f"b{u}:",
                           log_dir=str(base / "logs"), data_dir=str(base / "data")).replace(**overrides)
        finally:
            for proc in (broker, redis_proc):
                proc.kill()
                proc.wait()
    return run()

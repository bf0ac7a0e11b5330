"""The per-task Python paths of the client and a worker, timed in this one process (CPU time,
best of 5), so that a version compares with another on a loaded machine.

    .venv/bin/python bench/hot_path.py [--tasks 20000]

Measures, per `add` task in the seed format: a worker's triage of its record (decode,
argument check, digest), its three event lines, the claim's JSON of the arguments, its share of
a step's Redis command (built and packed, 8 claims and 8 outcomes a step), and the client's
check, message, encoding and digest. No Redis, no broker: `bench/cpu_per_task.py`
measures everything end to end. Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from redis.connection import HiredisRespSerializer

import yadtq.task.builtins  # noqa: F401  (registers add)
from yadtq import codec
from yadtq.client.building import make_message
from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.store.claims import Claim, ClaimPipeline, Outcome, Run
from yadtq.store.command_packer import CommandPacker
from yadtq.store.connection import RedisClient
from yadtq.task.registry import registry
from yadtq.worker.jobs import SUCCESS, Finished, Job
from yadtq.worker.records import Record, TaskWork, triage
from yadtq.worker.tracing import Tracing, tracing_policies
from yadtq.worker.tracker import Entry


def best_us(n: int, fn: Callable[[], object], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best / n * 1e6


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000)
    n = p.parse_args(argv).tasks
    ids = [str(uuid.uuid4()) for _ in range(n)]
    records = [Record(0, i, tid.encode(), f'{{"task-id":"{tid}","task":"add","args":[{i},1]}}'.encode())
               for i, tid in enumerate(ids)]
    settings = Settings(log_dir=tempfile.mkdtemp(prefix="yadtq-hot-path-"))
    events = EventLog(settings, "hot-path")
    works = [w for r in records if isinstance(w := triage(r, registry, 1 << 20), TaskWork)]

    def event_lines() -> None:
        for i, w in enumerate(works):
            common = {"task_id": w.task_id, "task": "add", "worker": "B1", "partition": 0, "offset": i}
            events.emit("task_received", **common)
            events.emit("task_started", attempt=1, **common)
            events.emit("task_succeeded", attempt=1, status="success", duration=0.0001, **common)

    # The tracing policy around each run, as a worker installs it (opentelemetry-api is in the lock), with
    # no tracer provider set and records without trace headers: the usual case.
    tracing = Tracing() if tracing_policies() else None
    jobs = [Job(Entry(r, w), w.task_id, registry.get("add"), Run("1", 1, "add", [i, 1], {}, None, None, 0, 0.0),
                None, 0.0) for i, (r, w) in enumerate(zip(records, works, strict=True))]

    def traced_runs() -> None:
        if tracing is None:
            return
        ctx: Any = SimpleNamespace(name="B1")  # all a span reads of the worker's context
        for j in jobs:
            tracing.before_run(ctx, j)
            tracing.after_run(ctx, Finished(j, SUCCESS))

    # A step's command as the worker's Redis connection packs it; no server is reached.
    pipeline = ClaimPipeline(RedisClient(port=1), settings, "B1", "1")
    sha = pipeline._step.sha or "0" * 40

    batches = [([Outcome(w.task_id, "1", "success", "2") for w in works[i:i + 8]],
                [Claim(w, 0, i + j) for j, w in enumerate(works[i:i + 8])]) for i in range(0, len(works), 8)]

    def built_steps() -> list[tuple[list[str], list[Any]]]:
        return [pipeline._step_call(pipeline.keys, outcomes, claims) for outcomes, claims in batches]

    steps = built_steps()

    def packed_steps(packer: Any) -> None:
        for keys, args in steps:
            packer.pack("EVALSHA", sha, len(keys), *keys, *args)

    def client() -> None:
        for i in range(n):
            registry.get("add").check_args([i, 1], {})
            _ = make_message(settings, "add", [i, 1], None, tries=None, time_limit=None, task_id=None,
                             key=None).digest

    json_us = best_us(n, lambda: [(codec.dumps(list(w.message.args)), codec.dumps(w.message.kwargs)) for w in works])
    figures = {
        "worker: triage (decode, check, digest)": best_us(n, lambda: [triage(r, registry, 1 << 20) for r in records]),
        "worker: three event lines": best_us(n, event_lines),
        "worker: the claim's JSON of args, kwargs": json_us,
        "worker: tracing policy around a run": best_us(n, traced_runs),
        "worker: the rest of a step's command": best_us(n, built_steps) - json_us,
        "worker: a step's command packed": best_us(n, lambda: packed_steps(CommandPacker())),
        "client: check, message, encoding, digest": best_us(n, client),
    }
    for name, us in figures.items():
        print(f"{name:42s} {us:6.2f} µs/task")
    print(f"{'in all':42s} {sum(figures.values()):6.2f} µs/task")
    stock_us = best_us(n, lambda: packed_steps(HiredisRespSerializer()))
    print(f"{'(the step packed by redis-py itself)':42s} {stock_us:6.2f} µs/task, against "
          f"{best_us(n, lambda: packed_steps(CommandPacker())):.2f}")
    events.close()


if __name__ == "__main__":
    main()

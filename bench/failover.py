"""Failover of one of 2 workers under a steady trickle of `add` tasks, on the current broker.

    .venv/bin/python bench/failover.py [--broker embedded kafka] [--static auto on off] [--session-ms MS]

Four moves of worker B1 in turn, each timed from the move to a task completed (success stored):
1. kill -9: until B2 completes a task on B1's partitions (`kill_failover_s`); then B1 started again
   under its name: until it completes one (`kill_rejoin_s`);
2. kill -9 and a restart at once (a crash the farm respawns): until B1's partitions complete a task
   again, by anyone (`bounce_s`), and how many times B2 had partitions taken away meanwhile
   (`bounce_survivor_revokes`: 0 when the restarted static member got its partitions back alone);
3. a clean stop (SIGTERM): until B2 completes a task on B1's partitions (`clean_failover_s`); then
   B1 started again: until it completes one (`clean_rejoin_s`).
Default settings (session timeout 6 s, heartbeats every 1 s), 4 partitions.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench import common, kafka_bench  # noqa: F401 (kafka_bench registers "kafka")
from bench.common import private_services, spawn_worker, stop, wait_until
from yadtq.broker.session import session_timeout_ms as session_timeout_ms_of
from yadtq.client.client import YADTQ
from yadtq.config import Settings

VICTIM, SURVIVOR = "B1", "B2"


class Trickle:
    """Submits `add` at `rate` tasks/s from a thread until stopped."""

    def __init__(self, q: YADTQ, rate: float) -> None:
        self.q, self.rate = q, rate
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        i, tick = 0, 0.05
        while self.running.is_set():
            self.q.submit_many([("add", [i, 1])] * max(1, int(self.rate * tick)))
            i += 1
            time.sleep(tick)

    def __enter__(self) -> Trickle:
        self.running.set()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running.clear()
        self.thread.join()


def _recent(q: YADTQ, since: float) -> list[Any]:
    return [r for r in q.backend.list("success", limit=400) if r.finished and r.finished > since]


def settled(q: YADTQ, quiet: float = 2.0, timeout: float = 90.0) -> dict[str, set[int]]:
    """Waits until both workers have served, each its own partitions, for `quiet` seconds: the
    partitions each serves."""
    def check() -> dict[str, set[int]] | None:
        held: dict[str, set[int]] = {}
        for r in _recent(q, time.time() - quiet):
            held.setdefault(r.worker or "", set()).add(r.partition)
        if set(held) != {VICTIM, SURVIVOR} or held[VICTIM] & held[SURVIVOR]:
            return None
        return held if len(held[VICTIM] | held[SURVIVOR]) == q.settings.partitions else None
    return wait_until(check, timeout, 0.2)  # type: ignore[no-any-return]


def served(q: YADTQ, after: float, partitions: set[int] | None, by: str | None, timeout: float = 90.0) -> float:
    """Seconds from `after` to the first task finished after it on `partitions` (any when None) by
    worker `by` (anyone when None)."""
    def first() -> float | None:
        done = [r.finished for r in _recent(q, after)
                if (partitions is None or r.partition in partitions) and (by is None or r.worker == by)]
        return min(done) - after if done else None
    return round(wait_until(first, timeout, 0.05), 2)


def revokes(settings: Settings, worker: str, after: float) -> int:
    """How many times `worker` had partitions taken away since `after` (from its event log)."""
    path = Path(settings.log_dir) / f"worker-{worker}.events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return sum(1 for e in events if e.get("event") == "partitions_revoked" and e.get("partitions")
               and float(e.get("ts", 0)) > after)


def run(rate: float = 40.0, static: str = "auto", session_timeout_ms: int | None = None) -> dict[str, float]:
    """The four moves on a private broker (the current one) and Redis; figures in seconds."""
    out: dict[str, float] = {}
    with private_services(partitions=4, static_membership=static, session_timeout_ms=session_timeout_ms) as s:
        out["session_timeout_s"] = session_timeout_ms_of(s) / 1000  # the broker's default, unless set
        procs: dict[str, subprocess.Popen[bytes]] = {n: spawn_worker(s, n) for n in (VICTIM, SURVIVOR)}
        try:
            with YADTQ(s) as q, Trickle(q, rate):
                held = settled(q)[VICTIM]
                procs[VICTIM].kill()
                t = time.time()
                out["kill_failover_s"] = served(q, t, held, SURVIVOR)
                procs[VICTIM].wait()
                t = time.time()
                procs[VICTIM] = spawn_worker(s, VICTIM)
                out["kill_rejoin_s"] = served(q, t, None, VICTIM)

                held = settled(q)[VICTIM]
                procs[VICTIM].kill()
                t = time.time()
                procs[VICTIM].wait()
                procs[VICTIM] = spawn_worker(s, VICTIM)
                out["bounce_s"] = served(q, t, held, None)
                served(q, t, None, VICTIM)
                out["bounce_survivor_revokes"] = revokes(s, SURVIVOR, t)

                held = settled(q)[VICTIM]
                procs[VICTIM].send_signal(signal.SIGTERM)
                t = time.time()
                out["clean_failover_s"] = served(q, t, held, SURVIVOR)
                procs[VICTIM].wait(timeout=60)
                t = time.time()
                procs[VICTIM] = spawn_worker(s, VICTIM)
                out["clean_rejoin_s"] = served(q, t, None, VICTIM)
        finally:
            stop(list(procs.values()))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", nargs="+", choices=list(common.BROKERS), default=["embedded"])
    p.add_argument("--static", nargs="+", choices=("auto", "on", "off"), default=["auto"],
                   help="YADTQ_STATIC_MEMBERSHIP values to measure (each a run)")
    p.add_argument("--rate", type=float, default=40.0, help="tasks/s of the trickle")
    p.add_argument("--session-ms", type=int, help="YADTQ_SESSION_TIMEOUT_MS (default: the default, 6000)")
    args = p.parse_args(argv)
    out: dict[str, Any] = {}
    for broker in args.broker:
        common.use_broker(broker)
        for static in args.static:
            got = common.attempt(run, args.rate, static, args.session_ms)
            out[f"{broker} static={static}"] = got
            print(f"{broker:9} static={static:4} {json.dumps(got)}", flush=True)
    return out


if __name__ == "__main__":
    main()

"""Rate and concurrency limits: how accurate a rate is, and what a saturated limit costs the rest.

    .venv/bin/python bench/limits_bench.py [--seconds 60] [--rate 20] [--unlimited 3000] [--buffered N]

On 2 worker processes (4 partitions): first `unlimited` `add` tasks with no limits (the
baseline throughput); then the built-in `sleep` is limited to `rate`/s at run time and
`rate * seconds` of `sleep 0` are submitted at once (saturated for `seconds`), followed by
the same `unlimited` `add` tasks, timed while the limited ones wait; then the limited ones
are let run out, and the baseline is measured again (it is the mean of both).

`--buffered N` sets the workers' YADTQ_MAX_BUFFERED (1,000 by default), so the limited backlog
can be made larger than their buffers (it then waits in Redis for its booked starts).

Figures: the rate achieved (starts, Redis time, first to last), the fewest starts in a whole
second of the run (its last, partial second left out), the most starts in any 1-second window
(the promise: at most rate + 1 per worker), and the unlimited throughput
beside the saturated limit as a ratio to the baseline (target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench.common import private_services, spawn_workers, stop, wait_for_count, workers_serving
from yadtq.client.client import YADTQ

WORKERS = 2


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def fewest_in_a_second(times: list[float]) -> int:
    """Starts in the emptiest whole second from the first start (the last, partial one left out)."""
    if len(times) < 2:
        return len(times)
    t0, n = min(times), int(max(times) - min(times))
    counts = [0] * max(n, 1)
    for t in times:
        if int(t - t0) < n:
            counts[int(t - t0)] += 1
    return min(counts)


def _adds_per_s(q: YADTQ, n: int, base: int) -> float:
    """`n` add tasks, first submit to the last success stored (`base` successes before them)."""
    t0 = time.perf_counter()
    for i in range(0, n, 2000):
        q.submit_many([("add", [j, 1]) for j in range(i, min(n, i + 2000))])
    wait_for_count(lambda: q.backend.counts()["success"], base + n, f"limits bench, {n:,} add")
    return n / (time.perf_counter() - t0)


def run(seconds: float = 60.0, rate: float = 20.0, unlimited: int = 3000, buffered: int | None = None
        ) -> dict[str, Any]:
    limited = int(rate * seconds)
    with private_services(partitions=4, **({"max_buffered": buffered} if buffered else {})) as s:
        procs = spawn_workers(s, WORKERS)
        try:
            with YADTQ(s) as q:
                workers_serving(q, WORKERS)
                base = q.backend.counts()["success"]
                before = _adds_per_s(q, unlimited, base)
                q.set_limit("sleep", rate_limit=f"{rate:g}/s")
                ids = q.submit_many([("sleep", [0])] * limited)
                beside = _adds_per_s(q, unlimited, base + unlimited)
                still_waiting = sum(1 for r in q.backend.get_many(ids) if not r.done)
                wait_for_count(lambda: q.backend.counts()["success"], base + 2 * unlimited + limited,
                               f"limits bench, {limited:,} limited", stall_s=max(60.0, 5 / rate))
                starts = sorted(float(r.started) for r in q.backend.get_many(ids) if r.started is not None)
                after = _adds_per_s(q, unlimited, base + 2 * unlimited + limited)  # the machine may have changed
        finally:
            stop(procs)
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    baseline = (before + after) / 2
    return {
        "rate_set_per_s": rate, "seconds": seconds, "limited_tasks": limited,
        "rate_achieved_per_s": (len(starts) - 1) / span if span else 0.0,
        "fewest_in_a_whole_second": fewest_in_a_second(starts), "max_buffered": buffered or 1000,
        "most_in_1s": most_in_one_second(starts), "allowed_in_1s": rate + WORKERS,
        "unlimited_tasks": unlimited, "unlimited_per_s_no_limits": baseline, "unlimited_per_s_beside_limit": beside,
        "unlimited_per_s_before": before, "unlimited_per_s_after": after,
        "unlimited_ratio": beside / baseline, "limited_waiting_when_unlimited_done": still_waiting,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long the limited type stays saturated")
    p.add_argument("--rate", type=float, default=20.0, help="its rate limit, starts per second")
    p.add_argument("--unlimited", type=int, default=3000, help="add tasks timed with and without the limit")
    p.add_argument("--buffered", type=int, default=None, help="the workers' YADTQ_MAX_BUFFERED")
    args = p.parse_args()
    print(json.dumps(run(args.seconds, args.rate, args.unlimited, args.buffered), indent=1))


if __name__ == "__main__":
    main()

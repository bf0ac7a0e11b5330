"""Where one task's latency goes at 100 tasks/s, hop by hop (finer than run.py's latency rows).

    .venv/bin/python bench/latency_hops.py [--tasks 1000] [--rate 100] [--broker kafka|embedded]

The latency workload of bench/yadtq_bench.py (2 worker processes, 4 partitions, `add` tasks
one submit at a time), with the workers' hops time-stamped by bench/latency_hops_hook.py
(imported into the worker processes only, by a sitecustomize.py written to a temporary
directory) and the client's submit split into its Redis record and its publish. Prints p50 /
p90 / p99 / max per hop, and the mean of each hop over the slowest 5 % of tasks: which hops
make the tail. Wall clocks of one machine; the time stamps cost a few
microseconds each, so totals read a little higher than run.py's.

Hops, in order (the critical path: the client's acknowledgement is not on it):
  record        submit's Redis record (the submit script; the reply waits for `appendfsync always`)
  publish       the produce sent until acknowledged by the broker (the submit's second half)
  deliver       the produce sent until the worker's poll returned the record
  poll_to_step  the record polled until its claim step was sent
  claim         the claiming step's round trip (Lua, then the fsync before the reply)
  to_thread     claim reply until the task began on a task thread
  run           the task itself
  to_loop       the task ended until the loop sent the outcome's step
  of which      the loop's time in that gap in Kafka polls, in other steps, in its timed chores
  after_ack     the produce acknowledged until the worker's poll returned the record (negative:
                the worker had it first), split by what the worker's loop was doing at the ack:
                already waiting in the poll that returned it (`_loop_waiting`: the fetch came back
                late) or busy elsewhere (`_loop_busy`: of it in another step, in its timed
                chores, in a poll that did not wait; the rest is waiting for a task or for a core)
  outcome       the outcome step's round trip (the stored `finished` is taken inside it,
                before its fsync, so only part of it counts in the total)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench import common, kafka_bench  # noqa: E402, F401 (kafka_bench registers "kafka")
from bench.common import percentile, private_services, spawn_workers, stop  # noqa: E402
from bench.yadtq_bench import paced_adds  # noqa: E402
from yadtq.client import client as client_module  # noqa: E402
from yadtq.client.client import YADTQ  # noqa: E402

HOPS = ("total", "record", "publish", "deliver", "after_ack", "after_ack_loop_waiting", "after_ack_loop_busy",
        "busy_in_step", "busy_in_chores", "busy_in_poll", "poll_to_step", "claim", "to_thread", "run", "to_loop",
        "of_which_poll", "of_which_step", "of_which_chores", "outcome")


def _traced_workers(settings: Any, n: int, log_dir: str) -> list[subprocess.Popen[bytes]]:
    """spawn_workers, each importing bench/latency_hops_hook.py at start (through a sitecustomize)."""
    Path(log_dir, "sitecustomize.py").write_text("import bench.latency_hops_hook  # noqa: F401\n")
    real = subprocess.Popen

    def popen(cmd: Any, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
        env = dict(env or os.environ)
        env["PYTHONPATH"] = os.pathsep.join([log_dir, env.get("PYTHONPATH", "")])
        env["LATENCY_HOPS_DIR"] = log_dir
        return real(cmd, env=env, **kw)

    subprocess.Popen = popen  # type: ignore[misc, assignment]
    try:
        return spawn_workers(settings, n)
    finally:
        subprocess.Popen = real  # type: ignore[misc]


Spans = dict[str, list[tuple[float, float]]]  # what a worker's loop did when: P poll, S step, H chores


def _read(log_dir: str) -> tuple[dict[str, dict[str, float]], dict[int, Spans], dict[int, list[tuple[float, float]]]]:
    """Per task, its events (and "worker": which file); per worker, its loop's spans by kind, and
    the polls that waited (timeout > 0)."""
    events: dict[str, dict[str, float]] = {}
    spans: dict[int, Spans] = {}
    waits: dict[int, list[tuple[float, float]]] = {}
    for i, path in enumerate(sorted(Path(log_dir).glob("hops-*.log"))):
        spans[i], waits[i] = {"P": [], "S": [], "H": []}, []
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts[0] in spans[i]:
                spans[i][parts[0]].append((float(parts[2]), float(parts[3])))
                if parts[0] == "P" and float(parts[1]) > 0:
                    waits[i].append((float(parts[2]), float(parts[3])))
            else:
                e = events.setdefault(parts[1], {})
                e[parts[0]] = float(parts[2])
                e["worker"] = i
    return events, spans, waits


def _overlap(spans: list[tuple[float, float]], a: float, b: float) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for start, end in spans)


def run(n: int, rate: float) -> list[dict[str, float]]:
    published: dict[str, float] = {}  # task id: when its publish began (its record was written)
    send = client_module.YADTQ._send

    def timed_send(self: YADTQ, messages: Any, wait: bool) -> None:
        t = time.time()
        send(self, messages, wait)
        for m in messages:
            published[m.task_id] = t

    client_module.YADTQ._send = timed_send  # type: ignore[method-assign]
    log_dir = tempfile.mkdtemp(prefix="latency-hops-")
    with private_services(partitions=4) as s:
        procs = _traced_workers(s, 2, log_dir)
        try:
            with YADTQ(s) as q:
                sent, recs = paced_adds(q, n, rate)
        finally:
            stop(procs)
            client_module.YADTQ._send = send  # type: ignore[method-assign]
    events, spans, waits = _read(log_dir)
    rows = []
    for r in recs:
        e = events.get(r.task_id, {})
        if not {"poll", "cstep0", "cstep1", "run", "ran", "ostep0", "ostep1"} <= e.keys():
            continue
        before, after = sent[r.task_id]
        pub = published[r.task_id]
        mine, w = spans[int(e["worker"])], int(e["worker"])
        # The loop's poll that returned the record: was the loop already waiting in it when the
        # broker acknowledged the produce (then the fetch came back late), or busy elsewhere?
        ret = min((p for p in mine["P"] if p[1] >= e["poll"]), key=lambda p: p[1], default=(e["poll"], e["poll"]))
        waiting = ret[0] <= after
        busy = (after, e["poll"]) if not waiting else (0.0, 0.0)
        gap = (e["ran"], e["ostep0"])
        rows.append({"total": r.finished - before, "record": pub - before, "publish": after - pub,
                     "deliver": e["poll"] - pub, "poll_to_step": e["cstep0"] - e["poll"],
                     "claim": e["cstep1"] - e["cstep0"], "to_thread": e["run"] - e["cstep1"],
                     "run": e["ran"] - e["run"], "to_loop": e["ostep0"] - e["ran"],
                     "of_which_poll": _overlap(mine["P"], *gap), "of_which_step": _overlap(mine["S"], *gap),
                     "of_which_chores": _overlap(mine["H"], *gap),
                     "outcome": e["ostep1"] - e["ostep0"], "after_ack": e["poll"] - after,
                     "after_ack_loop_waiting": e["poll"] - after if waiting else 0.0,
                     "after_ack_loop_busy": 0.0 if waiting else e["poll"] - after,
                     "busy_in_step": _overlap(mine["S"], *busy), "busy_in_chores": _overlap(mine["H"], *busy),
                     "busy_in_poll": _overlap(mine["P"], *busy) - _overlap(waits[w], *busy)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--broker", choices=list(common.BROKERS), default="kafka")
    args = p.parse_args()
    common.use_broker(args.broker)
    load0 = common.load()
    rows = run(args.tasks, args.rate)
    print(f"{len(rows)} tasks on {args.broker} at {args.rate:g}/s, load {load0:.1f} -> {common.load():.1f} (ms)")
    for hop in HOPS:
        v = sorted(x[hop] * 1000 for x in rows)
        print(f"  {hop:14s} p50 {percentile(v, 50):7.2f}  p90 {percentile(v, 90):7.2f}"
              f"  p99 {percentile(v, 99):7.2f}  max {v[-1]:7.2f}")
    cut = percentile([x["total"] for x in rows], 95)
    tail = [x for x in rows if x["total"] >= cut]
    print(f"  slowest 5 % ({len(tail)} tasks), mean per hop:")
    print("  " + "  ".join(f"{h} {sum(x[h] for x in tail) / len(tail) * 1000:.1f}" for h in HOPS))


if __name__ == "__main__":
    main()

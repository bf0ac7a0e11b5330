"""Chaos benchmark: the chaos test, longer, on a private broker and Redis.

    .venv/bin/python bench/chaos.py --tasks 50000 --minutes 5
    .venv/bin/python bench/chaos.py --faults all --tasks 20000 --minutes 5
    .venv/bin/python bench/chaos.py --faults all --broker kafka --tasks 20000 --minutes 5
    .venv/bin/python bench/chaos.py --redis-ha --faults kill,primary --tasks 5000 --minutes 2

`--faults all`: kill -9 of workers, SIGSTOP/SIGCONT of one, broker kill and
restart, Redis kill and restart on its append-only file, in turn every
--kill-every seconds, during a mixed workload at concurrency 4, with a
monitor running; prints the faults of each kind and the longest time to
recover after each kind. `--redis-ha`: Redis is a primary, a replica and
three Sentinels (as `yadtq services --redis-ha` starts them), and its fault is
`primary` (kill -9 of the current primary, which rejoins as a replica a few
seconds after the failover) instead of `redis`; prints each failover's time.

Submits ledger tasks (tests/ledger_tasks.py), runs a farm of 4 workers + 1
standby with respawn, kills a random non-standby worker with kill -9 every
~2 s for at most --minutes, then lets the farm finish without kills (at most
--drain-minutes). Prints the figures and writes the chaos notebook's input
to --out (default bench/results/chaos): summary.json, kills.csv, ledger.csv,
logs/ and export/ (from `yadtq export`). Exit code 1 if the promise broke
(a task lost or run twice after completion).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
# The farm's children import the ledger tasks from tests/.
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])

from worker_farm.chaos import run_chaos, write_report  # noqa: E402
from worker_farm.chaos_faults import FAULT_KINDS, HA_FAULT_KINDS  # noqa: E402
from worker_farm.chaos_mix import ChaosMix  # noqa: E402
from worker_farm.chaos_services import OwnedServices  # noqa: E402
from worker_farm.mixes import all_mixes  # noqa: E402
from worker_farm.mixes.workflows import WorkflowsMix  # noqa: E402
from yadtq.config import Settings  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=50_000)
    p.add_argument("--minutes", type=float, default=5.0, help="at most this long with kills (default 5)")
    p.add_argument("--drain-minutes", type=float, default=10.0,
                   help="then at most this long without kills for the rest (default 10)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--standby", type=int, default=1)
    p.add_argument("--kill-every", type=float, default=2.0, help="seconds between kills, ±25%% (default 2)")
    p.add_argument("--pause", type=float, default=0.004, help="seconds each task works (default 0.004)")
    p.add_argument("--partitions", type=int, default=8, help="default 8; 4 with broker faults (a lost topic "
                   "is recreated by the embedded broker with 4 when a client asks for it first)")
    p.add_argument("--faults", default="kill",
                   help="kill | all | a comma list of " + ", ".join(dict.fromkeys(FAULT_KINDS + HA_FAULT_KINDS)))
    p.add_argument("--redis-ha", action="store_true",
                   help="Redis behind three Sentinels, with a replica; `all` then kills the primary, not Redis")
    p.add_argument("--concurrency", type=int, default=0, help="tasks a worker runs at once (default 4 with "
                   "--faults all, else the setting's default)")
    p.add_argument("--session-timeout-ms", type=int, default=3000)
    p.add_argument("--lease", type=float, default=0.0,
                   help="seconds (default 3; 6 with --redis-ha: a lease must outlast a failover, ~3.2 s here)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos")
    p.add_argument("--broker", choices=("embedded", "kafka"), default="embedded",
                   help="the run's own broker: the embedded one (a restart loses its log) or an Apache Kafka node")
    p.add_argument("--mixes", action="store_true",
                   help="also run the capability mixes (worker_farm/mixes) beside the ledger tasks, each judged apart")
    p.add_argument("--workflows", type=int, default=0, metavar="N",
                   help="also run N workflows of mixed shapes (chain, group, chord, a chord in a chain) beside "
                        "the ledger tasks: every one must end, every callback run once (with or without --mixes)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the farm's lines")
    args = p.parse_args()

    every = HA_FAULT_KINDS if args.redis_ha else FAULT_KINDS
    faults = every if args.faults == "all" else tuple(f.strip() for f in args.faults.split(",") if f.strip())
    every_kind = args.faults == "all"
    services_faults = bool({"broker", "redis", "primary"} & set(faults))
    base = Path(tempfile.mkdtemp(prefix="yadtq-chaos-"))
    # Apache Kafka refuses session timeouts below 6 s unless the broker allows them.
    kafka = {"group.min.session.timeout.ms": "1000", "group.initial.rebalance.delay.ms": "500"}
    owned = OwnedServices(base, kafka=kafka if args.broker == "kafka" else None, redis_ha=args.redis_ha)
    u = uuid.uuid4().hex[:8]
    partitions = 4 if services_faults and args.partitions == 8 else args.partitions
    extra = {"concurrency": args.concurrency or 4} if (args.concurrency or every_kind) else {}
    settings = Settings(
        kafka_bootstrap=owned.kafka_bootstrap, redis_url=owned.redis_url,
        topic=f"chaos-{u}", group=f"chaos-{u}", heartbeat_topic=f"chaos-hb-{u}", prefix=f"chaos{u}:",
        partitions=partitions, log_dir=str(base / "logs"), data_dir=str(base / "data"),
        lease=args.lease or (6.0 if args.redis_ha else 3.0), heartbeat_interval=1.0, session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(100, args.session_timeout_ms // 6), max_poll_interval_ms=20_000,
        requeue_stale_after=10.0, **extra)
    started = time.monotonic()

    def progress(counts: dict[str, int], faults: int) -> None:
        print(f"  {time.monotonic() - started:6.0f}s  " + "  ".join(f"{k}={v}" for k, v in counts.items())
              + f"  faults={faults}", flush=True)

    print(f"chaos on the {args.broker} broker: {args.tasks} tasks, {args.workers} workers + {args.standby} "
          f"standby, a fault ({', '.join(faults)}) every ~{args.kill_every:g}s for at most {args.minutes:g} min "
          f"(broker :{owned.kport}, redis {owned.redis_url})", flush=True)
    try:
        report = run_chaos(settings, args.tasks, args.workers, args.standby, args.kill_every, args.minutes,
                           args.seed, pause=args.pause, drain_minutes=args.drain_minutes,
                           say=print if args.verbose else None, progress=progress, faults=faults,
                           services=owned.control(), monitor=services_faults or every_kind, mixed=every_kind,
                           mixes=_mixes(args))
        if args.out.exists():
            shutil.rmtree(args.out)
        notes = write_report(report, args.out, settings)
    finally:
        owned.stop()
        shutil.rmtree(base, ignore_errors=True)

    rows = [("tasks", report.tasks), ("kills", report.kills), ("lost", report.lost),
            ("run twice after completion", report.run_twice_after_completion),
            ("re-runs after a mid-run kill", report.reruns_after_midrun_kill),
            ("retries after the task raised", report.retries_after_failure),
            ("quarantined, then requeued", report.quarantined),
            ("wall time", f"{report.wall_s:.1f} s"), ("throughput", f"{report.throughput:.1f} tasks/s"),
            ("while killing", f"{report.kill_phase[1]} tasks in {report.kill_phase[0]:.0f} s "
                              f"({report.kill_phase[1] / max(report.kill_phase[0], 1e-9):.1f} tasks/s)"),
            ("faults", report.faults), ("longest time to recover (s)", report.recover_s),
            ("every process alive at the end", report.alive_at_end),
            ("status counts", report.counts)]
    for name, value in rows:
        print(f"{name:30} {value}")
    for f in (f for f in report.fault_log if f.kind == "primary"):
        print(f"  primary kill: new primary named after {f.ended - f.ts:.1f} s, next task completed "
              f"{f.recover_s if f.recover_s is not None else '?'} s later")
    for name, problems in report.mix_problems.items():
        print(f"mix {name}: {len(problems)} broken: " + "; ".join(problems[:5]))
    for line in [*report.unexplained, *report.wrongly_quarantined][:20]:
        print(f"  violation: {line}")
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {args.out}")
    ok = report.lost == 0 and report.run_twice_after_completion == 0 and report.alive_at_end and not report.mix_problems
    return 0 if ok else 1


def _mixes(args: argparse.Namespace) -> list[ChaosMix]:
    """--mixes: every mix; --workflows N: the workflows mix at N workflows (alone, or instead of its default)."""
    mixes = all_mixes() if args.mixes else []
    if args.workflows:
        mixes = [m for m in mixes if m.name != "workflows"] + [WorkflowsMix(count=args.workflows)]
    return mixes


if __name__ == "__main__":
    sys.exit(main())

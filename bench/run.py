"""`make bench`: every benchmark in one run, a table with the ratios, JSON in bench/results/.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--runs N]

Each benchmark starts its own private broker and Redis. Medians of --runs
runs with min and max; YADTQ and Celery run in the same invocation, so their
ratio is measured on the same (shared, noisy) machine at the same time.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench import yadtq_bench  # noqa: E402
from bench.common import save, summarize  # noqa: E402

NAMES = ("transport", "throughput", "latency", "failover", "memory", "dashboard", "celery", "kafka")


def repeat(runs: int, fn, *args) -> dict:
    results = [fn(*args) for _ in range(runs)]
    return {k: summarize([r[k] for r in results]) for k in results[0]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one run each (a smoke test)")
    p.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    runs = 1 if args.quick else args.runs
    n_tp, n_lat, n_mem = (2000, 100, 5000) if args.quick else (20_000, 1000, 100_000)
    rate = 100.0
    out: dict = {}
    t0 = time.time()
    if "transport" in args.only:
        out["transport"] = repeat(runs, yadtq_bench.transport, n_tp)
        out["transport_latency"] = repeat(runs, yadtq_bench.transport_latency, n_lat, rate)
    if "throughput" in args.only:
        out["throughput"] = repeat(runs, yadtq_bench.throughput, n_tp)
    if "latency" in args.only:
        out["latency"] = repeat(runs, yadtq_bench.latency, n_lat, rate)
    if "failover" in args.only:
        out["failover"] = repeat(1, yadtq_bench.failover)
    if "memory" in args.only:
        out["memory"] = repeat(1, yadtq_bench.memory, n_mem)
    if "dashboard" in args.only:
        from bench import dashboard_refresh
        sizes = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
        out["dashboard"] = {k: summarize([v]) for k, v in dashboard_refresh.main(sizes).items()}
    if "celery" in args.only:
        from bench import celery_bench
        rig = celery_bench.CeleryRig()
        try:
            out["celery_throughput"] = repeat(runs, celery_bench.throughput, rig, n_tp)
            out["celery_latency"] = repeat(runs, celery_bench.latency, rig, n_lat, rate)
            gc.collect()  # Celery's result objects talk to Redis when collected: before it stops
        finally:
            rig.close()
    if "kafka" in args.only:  # the broker benchmarks again on one Apache Kafka node (bench/kafka_bench.py)
        from bench import kafka_bench
        out["kafka"] = kafka_bench.run_all(runs, n_tp, n_lat, rate, embedded="failover" in args.only)
    out["wall_s"] = round(time.time() - t0, 1)
    save("quick" if args.quick else "latest", out)
    print_table(out)
    if "kafka" in out:
        from bench import kafka_bench
        kafka_bench.print_broker_table(out)
    return out


def _m(out: dict, bench: str, key: str) -> float | None:
    return out.get(bench, {}).get(key, {}).get("median")


def print_table(out: dict) -> None:
    rows = []

    def row(label: str, bench: str, key: str, unit: str, fmt: str = "{:,.0f}") -> None:
        cell = out.get(bench, {}).get(key)
        if cell:
            rows.append((label, f"{fmt.format(cell['median'])} {unit}",
                         f"{fmt.format(cell['min'])} .. {fmt.format(cell['max'])}"))
    row("transport: produce", "transport", "produce_per_s", "msg/s")
    row("transport: consume", "transport", "consume_per_s", "msg/s")
    row("transport: ceiling (produce then consume)", "transport", "ceiling_per_s", "msg/s")
    row("YADTQ submit rate", "throughput", "submit_per_s", "tasks/s")
    row("YADTQ end to end (2 workers)", "throughput", "end_to_end_per_s", "tasks/s")
    row("Celery submit rate", "celery_throughput", "submit_per_s", "tasks/s")
    row("Celery end to end (prefork 2)", "celery_throughput", "end_to_end_per_s", "tasks/s")
    for who, bench in (("YADTQ", "latency"), ("Kafka alone", "transport_latency"), ("Celery", "celery_latency")):
        for q in ("p50", "p95", "p99"):
            row(f"{who} latency {q} at 100/s", bench, f"{q}_ms", "ms", "{:.1f}")
    row("failover after kill -9", "failover", "failover_s", "s", "{:.1f}")
    row("Redis memory per finished task", "memory", "bytes_per_task", "B")
    for key in sorted(out.get("dashboard", {})):
        row(f"dashboard refresh, {int(key.rsplit('_', 1)[1]):,} records", "dashboard", key, "ms", "{:.1f}")
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'benchmark':{width}}  {'median':>18}  {'min .. max':>22}")
    for label, med, rng in rows:
        print(f"{label:{width}}  {med:>18}  {rng:>22}")
    ratios = []
    y, c = _m(out, "throughput", "end_to_end_per_s"), _m(out, "celery_throughput", "end_to_end_per_s")
    if y and c:
        ratios.append(f"throughput YADTQ/Celery: {y / c:.1f}x (target >= 4x)")
    ceiling = _m(out, "transport", "ceiling_per_s")
    if y and ceiling:
        ratios.append(f"throughput / transport ceiling: {y / ceiling:.0%} (target >= 40%)")
    yl, kl, cl = _m(out, "latency", "p99_ms"), _m(out, "transport_latency", "p99_ms"), _m(out, "celery_latency", "p99_ms")
    if yl and kl:
        ratios.append(f"p99 YADTQ / Kafka alone: {yl / kl:.1f}x (target <= 2x; YADTQ p99 target < 20 ms)")
    if yl and cl:
        ratios.append(f"p99 YADTQ / Celery: {yl / cl:.1f}x")
    for r in ratios:
        print(r)
    print(f"(wall time {out['wall_s']} s)")


if __name__ == "__main__":
    main()

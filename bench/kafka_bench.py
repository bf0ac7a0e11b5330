"""The broker benchmarks on a single Apache Kafka node, beside the embedded broker and Celery.

    .venv/bin/python bench/kafka_bench.py [--quick] [--runs N] [--only PART ...] [--out JSON]

Runs yadtq_bench's transport ceiling, end-to-end throughput and latency at 100 tasks/s on one
Apache Kafka node (fetched once with Maven, see yadtq/kafka_cluster.py), plus failover after
kill -9 and after a clean stop (SIGTERM) of a worker, on both brokers. One Kafka node serves the
whole run (each workload gets its own topic, group and a fresh Redis); it starts in about 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench import common, yadtq_bench  # noqa: E402
from bench.common import repeat, save  # noqa: E402
from yadtq.config import Settings  # noqa: E402
from yadtq.ops.kafka_cluster import KAFKA_VERSION, KafkaCluster  # noqa: E402
from yadtq.ops.ports import free_port  # noqa: E402
from yadtq.ops.services import start_redis  # noqa: E402


def start_kafka(base: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """bench.common's broker starter for "kafka": one Apache Kafka node in `base` (`run.py --broker kafka`)."""
    cluster = KafkaCluster(base / "kafka", base / "logs", [free_port()], [free_port()],
                           broker_config={"group.initial.rebalance.delay.ms": "500"})
    cluster.start()
    return cluster.bootstrap, list(cluster.procs.values())


common.BROKERS["kafka"] = start_kafka


class KafkaNode:
    """One Apache Kafka node for the whole benchmark run, its initial rebalance delay 0.5 s as in the tests."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="yadtq-bench-kafka-"))
        self.cluster = KafkaCluster(self.base / "kafka", self.base / "logs", [free_port()], [free_port()],
                                    broker_config={"group.initial.rebalance.delay.ms": "500"})
        t0 = time.monotonic()
        self.cluster.start(say=print)
        self.start_s = time.monotonic() - t0

    @contextlib.contextmanager
    def services(self, **overrides: Any) -> Iterator[Settings]:
        """Like bench.common.private_services: fresh topic, group and Redis, on this Kafka node."""
        rport = free_port()
        u = uuid.uuid4().hex[:8]
        redis_proc = start_redis("127.0.0.1", rport, self.base / f"data-{u}", self.base / "logs")
        try:
            yield Settings(kafka_bootstrap=self.cluster.bootstrap, redis_url=f"redis://127.0.0.1:{rport}/0",
                           topic=f"bench-{u}", heartbeat_topic=f"hb-{u}", group=f"g-{u}", prefix=f"b{u}:",
                           log_dir=str(self.base / "logs"), data_dir=str(self.base / f"data-{u}")).replace(**overrides)
        finally:
            redis_proc.kill()
            redis_proc.wait()

    def close(self) -> None:
        self.cluster.stop()


@contextlib.contextmanager
def on(node: KafkaNode | None) -> Iterator[None]:
    """Points yadtq_bench's workloads at `node` (None: the embedded broker, as they are written)."""
    if node is None:
        yield
        return
    saved = yadtq_bench.private_services
    yadtq_bench.private_services = node.services  # type: ignore[assignment]
    try:
        yield
    finally:
        yadtq_bench.private_services = saved


PARTS = ("transport", "throughput", "latency", "failover")


def run_all(runs: int, n_tp: int, n_lat: int, rate: float = 100.0, embedded: bool = True,
            only: Sequence[str] = PARTS) -> dict[str, Any]:
    """Every broker benchmark (or `only` some) on a Kafka node; failover after a clean stop on the
    embedded broker too (when `embedded`)."""
    node = KafkaNode()
    out: dict[str, Any] = {"kafka_version": KAFKA_VERSION, "kafka_start_s": round(node.start_s, 1),
                           "load_at_start": common.load()}
    try:
        with on(node):
            if "transport" in only:
                out["transport"] = repeat(runs, yadtq_bench.transport, n_tp)
                out["transport_latency"] = repeat(runs, yadtq_bench.transport_latency, n_lat, rate)
            if "throughput" in only:
                out["throughput"] = repeat(runs, yadtq_bench.throughput, n_tp)
            if "latency" in only:
                out["latency"] = repeat(runs, yadtq_bench.latency, n_lat, rate)
        if "failover" in only:
            out["failover"] = repeat(1, yadtq_bench.failover, 200, signal.SIGKILL, node.services)
            out["failover_clean"] = repeat(1, yadtq_bench.failover, 200, signal.SIGTERM, node.services)
    finally:
        node.close()
    if embedded and "failover" in only:
        out["embedded_failover_clean"] = repeat(1, yadtq_bench.failover, 200, signal.SIGTERM,
                                                common.private_services)
    out["load_at_end"] = common.load()
    return out


def _m(section: dict[str, Any], bench: str, key: str) -> float | None:
    cell = section.get(bench, {}).get(key)
    return cell["median"] if cell else None


def print_broker_table(out: dict[str, Any]) -> None:
    """A column per broker beside Celery: `out` is bench/run.py's result with `out["kafka"]` from run_all."""
    k = out.get("kafka", {})
    if not k:
        return
    embedded_clean = {"failover_clean": k.get("embedded_failover_clean", {})}
    rows: list[tuple[str, float | None, float | None, float | None, str]] = [
        ("transport ceiling (msg/s)", _m(out, "transport", "ceiling_per_s"), _m(k, "transport", "ceiling_per_s"),
         None, "{:,.0f}"),
        ("end to end, 2 workers (tasks/s)", _m(out, "throughput", "end_to_end_per_s"),
         _m(k, "throughput", "end_to_end_per_s"), _m(out, "celery_throughput", "end_to_end_per_s"), "{:,.0f}"),
        ("transport latency p99 at 100/s (ms)", _m(out, "transport_latency", "p99_ms"),
         _m(k, "transport_latency", "p99_ms"), None, "{:.1f}"),
        ("task latency p50 at 100/s (ms)", _m(out, "latency", "p50_ms"), _m(k, "latency", "p50_ms"),
         _m(out, "celery_latency", "p50_ms"), "{:.1f}"),
        ("task latency p99 at 100/s (ms)", _m(out, "latency", "p99_ms"), _m(k, "latency", "p99_ms"),
         _m(out, "celery_latency", "p99_ms"), "{:.1f}"),
        ("failover after kill -9 (s)", _m(out, "failover", "failover_s"), _m(k, "failover", "failover_s"),
         None, "{:.1f}"),
        ("failover after a clean stop (s)", _m(embedded_clean, "failover_clean", "failover_s"),
         _m(k, "failover_clean", "failover_s"), None, "{:.1f}"),
    ]

    def cell(v: float | None, fmt: str) -> str:
        return fmt.format(v) if v is not None else "-"
    print(f"\n{'per broker (medians)':38}  {'embedded':>10}  {'Kafka ' + k['kafka_version']:>12}  {'Celery':>10}")
    for label, emb, kaf, cel, fmt in rows:
        print(f"{label:38}  {cell(emb, fmt):>10}  {cell(kaf, fmt):>12}  {cell(cel, fmt):>10}")
    checks = []
    kl, cl = _m(k, "latency", "p99_ms"), _m(out, "celery_latency", "p99_ms")
    if kl and cl:
        checks.append(f"Kafka p99 / Celery p99: {kl / cl:.2f}x (target <= 1.5x)")
    e2e, ceiling = _m(k, "throughput", "end_to_end_per_s"), _m(k, "transport", "ceiling_per_s")
    if e2e and ceiling:
        checks.append(f"Kafka end to end / Kafka transport ceiling: {e2e / ceiling:.0%} (target >= 40%)")
    clean, kill = _m(k, "failover_clean", "failover_s"), _m(k, "failover", "failover_s")
    if clean is not None:
        checks.append(f"Kafka failover after a clean stop: {clean:.1f} s (target < 3 s)")
    if kill is not None:
        session = _m(k, "failover", "session_timeout_s") or 10.0
        checks.append(f"Kafka failover after kill -9: {kill:.1f} s (target <= session timeout {session:g} s + 3 s)")
    for line in checks:
        print(line)
    print(f"(Apache Kafka node started in {k.get('kafka_start_s')} s)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one run each")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    p.add_argument("--out", type=Path, metavar="JSON", help="where the results go (default "
                   "bench/results/kafka-latest.json, or kafka-quick.json with --quick)")
    args = p.parse_args(argv)
    runs = 1 if args.quick else args.runs
    n_tp, n_lat = (2000, 100) if args.quick else (20_000, 1000)
    out = {"kafka": run_all(runs, n_tp, n_lat, only=args.only)}
    print(f"wrote {save('kafka-quick' if args.quick else 'kafka-latest', out, args.out)}")
    print_broker_table(out)
    return out


if __name__ == "__main__":
    main()

"""What the embedded broker's front (yadtq/ops/broker_front.py) costs: kafka-python produce and consume
of N seed-format tasks straight to tansu and through the front, rounds alternating the order.

    .venv/bin/python bench/front_overhead.py [N] [ROUNDS]

Prints msg/s each way and the CPU seconds of the broker process started (tansu itself without
the front; only the front, not its tansu child, with it). Not part of `make bench`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from yadtq.ops.ports import free_port
from yadtq.ops.services import start_broker


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(bootstrap: str, pid: int, n: int) -> tuple[float, float, float, float]:
    topic = f"front-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    values = [json.dumps({"task-id": uuid.uuid4().hex, "task": "add", "args": [i, 2]}).encode() for i in range(n)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for value in values:
        producer.send(topic, value)
    producer.flush()
    produce_s, produce_cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}",
                             auto_offset_reset="earliest", max_poll_records=2000, fetch_max_wait_ms=100,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_interval_ms=20000)
    got = first = 0
    start = cpu1 = 0.0
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        batch = sum(len(v) for v in consumer.poll(timeout_ms=500).values())
        if batch and not start:  # timed from the first batch: the group join is not the front's
            start, cpu1, first = time.monotonic(), cpu_seconds(pid), batch
        got += batch
    consume_s, consume_cpu = time.monotonic() - start, cpu_seconds(pid) - cpu1
    consumer.close()
    if got < n:
        raise SystemExit(f"consumed {got} of {n}")
    return n / produce_s, (got - first) / consume_s, produce_cpu, consume_cpu


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    logs = Path(tempfile.mkdtemp(prefix="front-bench-"))
    brokers = {}
    for front in (False, True):
        port = free_port()
        brokers[front] = (f"127.0.0.1:{port}", start_broker("127.0.0.1", port, logs, front=front))
    try:
        for r in range(rounds):
            for front in (True, False) if r % 2 == 0 else (False, True):
                bootstrap, proc = brokers[front]
                produce, consume, cpu_p, cpu_c = one_round(bootstrap, proc.pid, n)
                print(f"round {r} {'through the front' if front else 'straight to tansu'}: produce {produce:,.0f} "
                      f"msg/s, consume {consume:,.0f} msg/s; CPU {cpu_p:.2f}s / {cpu_c:.2f}s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for _, proc in brokers.values():
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()

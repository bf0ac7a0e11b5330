"""YADTQ's workloads: transport ceiling, end-to-end throughput, latency, failover, memory."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import percentile, private_services, spawn_workers, stop, wait_for_count, wait_until
from yadtq.broker.clients import ensure_topic
from yadtq.client.client import YADTQ
from yadtq.task.messages import TaskMessage


def _message(i: int) -> bytes:
    return TaskMessage(str(uuid.uuid4()), "add", (i, 1), {}, 3, time.time()).encode()


def transport(n: int) -> dict[str, float]:
    """Raw kafka-python produce, then consume, of the same task messages: no Redis, no execution."""
    with private_services(partitions=2) as s:
        ensure_topic(s, s.topic, 2)
        values = [_message(i) for i in range(n)]
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=5, acks=1, enable_idempotence=False)
        t0 = time.perf_counter()
        for v in values:
            producer.send(s.topic, v)
        producer.flush()
        produce = n / (time.perf_counter() - t0)
        producer.close()
        # No group: assigned partitions start fetching at once, so the clock starts before the first poll.
        consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=None, auto_offset_reset="earliest",
                                 max_poll_records=2000, fetch_max_wait_ms=20)
        consumer.assign([TopicPartition(s.topic, p) for p in range(2)])
        got, t0 = 0, time.perf_counter()
        while got < n:
            got += sum(len(r) for r in consumer.poll(timeout_ms=1000).values())
        consume = n / (time.perf_counter() - t0)
        consumer.close()
    return {"produce_per_s": produce, "consume_per_s": consume, "ceiling_per_s": 1 / (1 / produce + 1 / consume)}


def throughput(n: int, workers: int = 2) -> dict[str, float]:
    """First submit to last success stored: `n` add tasks, `workers` worker processes."""
    with private_services(partitions=4) as s:
        procs = spawn_workers(s, workers)
        try:
            with YADTQ(s) as q:
                warm = q.submit("add", [0, 0])
                q.result(warm, timeout=60)
                time.sleep(3)  # let every worker join before the clock starts
                t0 = time.perf_counter()
                for i in range(0, n, 2000):
                    q.submit_many([("add", [j, 1]) for j in range(i, min(n, i + 2000))])
                submitted = time.perf_counter() - t0
                wait_for_count(lambda: q.backend.counts()["success"], n + 1, f"throughput, {n:,} add")
                total = time.perf_counter() - t0
        finally:
            stop(procs)
    return {"tasks": n, "submit_per_s": n / submitted, "end_to_end_per_s": n / total}


def paced_adds(q: YADTQ, n: int, rate: float) -> tuple[dict[str, tuple[float, float]], list[Any]]:
    """After a warm-up task and 3 s, `n` `add` submitted one at a time at `rate`/s; waits for them all.
    Returns each id's (before submit, after submit) wall times, and their records."""
    q.result(q.submit("add", [0, 0]), timeout=60)
    time.sleep(3)
    sent: dict[str, tuple[float, float]] = {}
    t_next = time.perf_counter()
    for i in range(n):
        t_next += 1 / rate
        time.sleep(max(0.0, t_next - time.perf_counter()))
        before = time.time()
        task_id = q.submit("add", [i, 1])
        sent[task_id] = (before, time.time())
    wait_for_count(lambda: q.backend.counts()["success"], n + 1, f"latency, {n:,} add", timeout=120)
    return sent, q.backend.get_many(list(sent))


def latency(n: int, rate: float) -> dict[str, float]:
    """Tasks submitted one at a time at `rate`/s: submit to success stored (the record's `finished`).

    Also where the time goes, p50 and p99 of each part: `submit` (the call: the Redis record, then
    the publish acknowledged), `pickup` (submit returned to the claim made in Redis: the broker
    hop, the worker's wake-up, the claim step; negative when a worker claims before the publish's
    acknowledgement reaches the client) and `store` (claimed to the outcome's step: the claim's
    reply, the hand-over to a task thread, the run, back to the loop). One machine, one clock."""
    with private_services(partitions=4) as s:
        procs = spawn_workers(s, 2)
        try:
            with YADTQ(s) as q:
                sent, recs = paced_adds(q, n, rate)
        finally:
            stop(procs)
    parts = {"": [r.finished - sent[r.task_id][0] for r in recs],
             "submit_": [sent[r.task_id][1] - sent[r.task_id][0] for r in recs],
             "pickup_": [r.started - sent[r.task_id][1] for r in recs],
             "store_": [r.finished - r.started for r in recs]}
    out = {f"{part}{q}_ms": percentile([v * 1000 for v in values], int(q[1:]))
           for part, values in parts.items() for q in ("p50", "p99")}
    out["p95_ms"] = percentile([v * 1000 for v in parts[""]], 95)
    return out


def transport_latency(n: int, rate: float) -> dict[str, float]:
    """The same rate through kafka-python alone: produce (flushed) to consume, same fetch settings as workers."""
    with private_services(partitions=4) as s:
        ensure_topic(s, s.topic, 4)
        consumer = KafkaConsumer(s.topic, bootstrap_servers=s.kafka_bootstrap, group_id="lat",
                                 auto_offset_reset="earliest", fetch_max_wait_ms=s.fetch_max_wait_ms,
                                 session_timeout_ms=10000, heartbeat_interval_ms=2000, max_poll_interval_ms=30000)
        lat: list[float] = []
        stop_flag = threading.Event()

        def consume() -> None:
            while not stop_flag.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    now = time.time()
                    lat.extend((now - json.loads(r.value)["t"]) * 1000 for r in records if r.value != b"warm")
        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=0, acks=1, enable_idempotence=False)
        producer.send(s.topic, b"warm")
        time.sleep(5)  # group join
        t_next = time.perf_counter()
        for _ in range(n):
            t_next += 1 / rate
            time.sleep(max(0.0, t_next - time.perf_counter()))
            producer.send(s.topic, json.dumps({"t": time.time()}).encode())
            producer.flush()
        wait_until(lambda: len(lat) >= n, 60)
        stop_flag.set()
        thread.join()
        producer.close()
        consumer.close()
    return {"p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99)}


def failover(rate: float = 200, how: signal.Signals = signal.SIGKILL,
             services: Callable[..., Any] | None = None) -> dict[str, float]:
    """A worker holding partitions is stopped with `how` (kill -9 by default; SIGTERM is a clean
    stop) under steady load: how long until its partitions complete tasks again on the other
    worker (default settings: session timeout 10 s, lease 10 s). `services`: where (default
    `private_services`, a fresh broker and Redis)."""
    with (services or private_services)(partitions=4) as s:
        procs = spawn_workers(s, 2)
        try:
            with YADTQ(s) as q:
                q.result(q.submit("add", [0, 0]), timeout=60)
                time.sleep(12)  # both joined and settled
                running = threading.Event()
                running.set()

                def load() -> None:
                    i = 0
                    while running.is_set():
                        q.submit_many([("add", [i, 1])] * max(1, int(rate / 20)))
                        i += 1
                        time.sleep(0.05)
                feeder = threading.Thread(target=load, daemon=True)
                feeder.start()
                time.sleep(3)
                recent = q.backend.list("success", limit=200)
                victim = next(p for p in procs if f"B{procs.index(p) + 1}" in {r.worker for r in recent})
                name = f"B{procs.index(victim) + 1}"
                held = {r.partition for r in recent if r.worker == name}
                victim.send_signal(how)
                stopped = time.time()

                def recovered() -> float | None:
                    for r in q.backend.list("success", limit=500):
                        if r.partition in held and r.worker != name and r.finished and r.finished > stopped:
                            return r.finished - stopped
                    return None
                took = wait_until(recovered, 120, 0.05)
                running.clear()
                feeder.join()
        finally:
            stop(procs)
    return {"failover_s": took, "session_timeout_s": s.session_timeout_ms / 1000, "lease_s": s.lease}


def memory(n: int) -> dict[str, float]:
    """Redis memory per finished task, from used_memory before and after `n` real tasks."""
    with private_services(partitions=4) as s:
        r = redis.Redis.from_url(s.redis_url)
        procs = spawn_workers(s, 2)
        try:
            with YADTQ(s) as q:
                q.result(q.submit("add", [0, 0]), timeout=60)
                before = r.info("memory")["used_memory"]
                for i in range(0, n, 2000):
                    q.submit_many([("add", [j, 1]) for j in range(i, min(n, i + 2000))])
                wait_for_count(lambda: q.backend.counts()["success"], n + 1, f"memory, {n:,} add", interval=0.2)
                after = r.info("memory")["used_memory"]
        finally:
            stop(procs)
    return {"bytes_per_task": (after - before) / n, "tasks": n}

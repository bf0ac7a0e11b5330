"""Every hostile record of issue 10 on the tasks topic of a real worker process.

Each one gives exactly one dead letter (oversized ones truncated, with their
size), a `failed` record where a task id is readable, and nothing else: the
worker stays alive, every partition keeps being served, and a record that
reuses a real task's id with another body leaves that task alone.
"""

from __future__ import annotations

import json

import pytest
from conftest import Procs, run_cli, wait_for
from kafka import KafkaConsumer, KafkaProducer

from yadtq.client.client import YADTQ
from yadtq.config import Settings

# The 100,000-deep record (200 KB) fits and reaches the parser; the huge one is past twice this.
LIMIT = 250_000


def _deep(depth: int) -> bytes:
    return b'{"task-id": "h-deep", "task": "add", "args": ' + b"[" * depth + b"]" * depth + b"}"


# name -> (raw value, task id expected `failed`, words its error must contain)
HOSTILE: dict[str, tuple[bytes, str | None, str]] = {
    "deep-json": (_deep(100_000), "h-deep", "nested deeper"),
    # Past twice the limit, and past what the worker's own producer may send (1 MiB).
    "huge": (b'{"task-id": "h-huge", "task": "add", "args": ["' + b"x" * 1_500_000 + b'", 1]}', "h-huge",
             "exceeds the limit"),
    "cut-json": (b'{"task-id": "h-cut", "task": "add", "args": [1,', "h-cut", "not JSON"),
    "garbage": (b"\x00\xff\xfe binary garbage", None, "not JSON"),
    "invalid-utf8": (b'{"task-id": "h-utf8", "task": "add", "args": ["\xff", 1]}', "h-utf8", "not JSON"),
    "nan": (b'{"task-id": "h-nan", "task": "add", "args": [NaN, 1]}', "h-nan", "not JSON"),
    "no-id": (b'{"task": "add", "args": [1, 2]}', None, "task-id"),
    "no-name": (b'{"task-id": "h-noname", "args": [1]}', "h-noname", "missing or invalid 'task'"),
    "unknown-task": (b'{"task-id": "h-unknown", "task": "teleport", "args": [1]}', "h-unknown", "unknown task"),
    "wrong-types": (b'{"task-id": "h-types", "task": "multiply", "args": ["a", {}]}', "h-types", "must be float"),
    "args-object": (b'{"task-id": "h-argsobj", "task": "add", "args": {"a": 1}}', "h-argsobj", "'args'"),
    "not-an-object": (b'[1, 2, 3]', None, "expected a JSON object"),
}


def _raw_producer(s: Settings) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_request_size=8 * 1024 * 1024, linger_ms=0)


def _dlq(s: Settings) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = KafkaConsumer(s.dlq_topic, bootstrap_servers=s.kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, max_partition_fetch_bytes=8 * 1024 * 1024)
    out = [(m.value, dict(m.headers)) for m in consumer]
    consumer.close()
    return out


@pytest.mark.timeout(300)
def test_every_hostile_record_is_dead_lettered_once_and_the_worker_serves_on(settings: Settings,
                                                                              procs: Procs) -> None:
    s = settings.replace(max_message_bytes=LIMIT)
    procs.settings = s
    worker = procs.worker("W1", settings=s)
    procs.wait_assigned(["W1"])
    with YADTQ(s) as q:
        # A real task, running while a foreign record reuses its id with another body.
        real = q.submit("sleep", [3], task_id="h-real")
        wait_for(lambda: q.status(real).status == "processing", 30, 0.05, "the real task to start")
        raw = _raw_producer(s)
        raw.send(s.topic, b'{"task-id": "h-real", "task": "teleport", "args": []}', partition=0)
        for n, (value, _, _) in enumerate(HOSTILE.values()):
            raw.send(s.topic, value, partition=n % s.partitions)
        raw.flush()
        raw.close()
        after = q.submit_many([("add", [i, i]) for i in range(4 * s.partitions)])  # every partition
        assert [q.result(t, timeout=120) for t in after] == [2 * i for i in range(4 * s.partitions)]
        assert q.result(real, timeout=60) == 3  # untouched by the foreign record
        assert q.status(real).attempts == 1

        for name, (_, tid, words) in HOSTILE.items():
            if tid is not None:
                rec = q.status(tid)
                assert rec.status == "failed" and words in (rec.error or ""), (name, rec)
        expected = len(HOSTILE) + 1  # and the foreign record
        wait_for(lambda: len(q.live.dead_letters(1000)) >= expected, 60, 0.2, "every dead letter in Redis")
        letters = q.live.dead_letters(1000)
        assert len(letters) == expected, [e["error"] for e in letters]
        assert all(len(e.get("raw", "")) <= 4096 for e in letters)
        counts = q.backend.counts()
        assert counts["success"] == 4 * s.partitions + 1 and counts["queued"] == counts["processing"] == 0

    values = _dlq(s)
    assert len(values) == expected
    huge = [(v, h) for v, h in values if int(h.get("size", b"0")) > 1_000_000]
    assert len(huge) == 1
    value, headers = huge[0]
    assert len(value) <= LIMIT and HOSTILE["huge"][0].startswith(value)  # cut, its size in a header
    assert int(headers["size"]) == len(HOSTILE["huge"][0])
    assert all(len(v) <= LIMIT for v, _ in values)
    events = [e["event"] for e in procs.events("worker-W1")]
    assert events.count("worker_joined") == 1 and worker.poll() is None  # never crashed, still serving


@pytest.mark.timeout(240)
def test_end_without_the_control_token_stops_nothing(settings: Settings, procs: Procs) -> None:
    s = settings.replace(control_token="run-7f3a")
    procs.settings = s
    procs.monitor()
    worker = procs.worker("W1", settings=s)
    procs.wait_assigned(["W1"])
    raw = _raw_producer(s)
    with YADTQ(s) as q:
        q.submit("add", [0, 0])  # the topic exists
        # One forged run: every partition gets the same id, some with no token, some with a wrong one.
        for p in range(s.partitions):
            body = {"control": "end", "id": "forged", **({"token": "guess"} if p % 2 else {})}
            raw.send(s.topic, json.dumps(body).encode(), partition=p)
        raw.flush()
        raw.close()
        ids = q.submit_many([("add", [i, 1]) for i in range(8)])
        assert [q.result(t, timeout=60) for t in ids] == [i + 1 for i in range(8)]
        wait_for(lambda: sum(e["event"] in ("end_received", "end_refused", "task_rejected")
                             for e in procs.events("worker-W1")) >= s.partitions, 30, 0.2, "every forged end read")
        assert worker.poll() is None and procs.procs["monitor"].poll() is None
        # The producer's `end` carries the token: that one stops the run.
        out = run_cli(s, "produce", s.topic, str(s.partitions), stdin="end\n")
        assert out.returncode == 0, out.stderr
        assert worker.wait(timeout=60) == 0 and procs.procs["monitor"].wait(timeout=60) == 0
    ends = [e for e in procs.events("worker-W1") if e["event"] == "end_received"]
    assert all("partition" in e and "offset" in e for e in ends)  # every end logged with where it was

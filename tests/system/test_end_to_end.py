"""The core engine end to end: real broker, real Redis, real worker processes."""

from __future__ import annotations

import json
import time

import pytest
import redis
from conftest import Procs, run_cli, wait_for
from kafka import KafkaProducer

from yadtq.client.client import YADTQ
from yadtq.errors import MessageError, TaskFailed, TaskNotFound
from yadtq.task.status import STATUSES


def test_arithmetic_through_the_api(q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    ids = {q.submit("add", [1, 2]): 3, q.submit("subtract", [10, 4]): 6, q.submit("multiply", [3, 4]): 12,
           q.submit("divide", [7, 2]): 3.5}
    for tid, expected in ids.items():
        assert q.result(tid, timeout=60) == expected
    rec = q.status(next(iter(ids)))
    assert rec.as_dict()["status"] == "success" and rec.as_dict()["result"] == 3
    assert rec.worker == "W1" and rec.attempts == 1
    assert rec.submitted <= rec.started <= rec.finished
    assert q.backend.counts() == {"scheduled": 0, "queued": 0, "processing": 0, "success": 4, "failed": 0, "cancelled": 0,
            "expired": 0}


def test_submit_many_and_unknown_id(q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    ids = q.submit_many([("add", [i, i]) for i in range(50)] + [{"task": "multiply", "args": [2, 21]}])
    assert len(set(ids)) == 51
    assert [q.result(t, timeout=60) for t in ids] == [2 * i for i in range(50)] + [42]
    with pytest.raises(TaskNotFound, match="no task with id 'nope'"):
        q.status("nope")
    with pytest.raises(MessageError, match="args must be a list"):
        q.submit("add", "12")


def test_the_cli_submits_and_tracks(settings, procs: Procs) -> None:
    procs.worker("W1")
    done = run_cli(settings, "submit", "multiply", "6", "7", "--wait", "--json", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    rec = json.loads(done.stdout)
    assert (rec["status"], rec["result"], rec["attempts"]) == ("success", 42, 1)
    sub = run_cli(settings, "submit", "subtract", "5", "8")
    tid = sub.stdout.strip()
    assert sub.returncode == 0 and len(tid) == 36
    res = run_cli(settings, "result", tid, "--timeout", "60")
    assert (res.returncode, res.stdout.strip()) == (0, "-3")
    st = run_cli(settings, "status", tid)
    assert st.returncode == 0 and f"{tid} subtract success result=-3" in st.stdout
    listing = run_cli(settings, "tasks", "--status", "success")
    assert "success=2" in listing.stdout and tid in listing.stdout
    failed = run_cli(settings, "submit", "fail", "boom", "--tries", "1", "--wait", "--timeout", "60")
    assert failed.returncode == 4 and "RuntimeError: boom" in failed.stdout
    missing = run_cli(settings, "status", "no-such-id")
    assert missing.returncode == 1 and "no task with id 'no-such-id'" in missing.stderr


def test_every_command_has_help() -> None:
    for cmd in ["services", "worker", "monitor", "produce", "submit", "status", "result", "tasks", "workers"]:
        out = run_cli(None, cmd, "--help")
        assert out.returncode == 0 and "usage: yadtq" in out.stdout, cmd


def test_load_is_spread_over_three_workers(settings, procs: Procs) -> None:
    s = settings.replace(partitions=6)
    names = ["W1", "W2", "W3"]
    for n in names:
        procs.worker(n, settings=s)
    procs.settings = s
    assignment = procs.wait_assigned(names)
    assert all(assignment[n] for n in names), assignment
    with YADTQ(s) as q:
        ids = q.submit_many([("add", [i, 1]) for i in range(300)])
        wait_for(lambda: q.backend.counts()["success"] == 300, 90, 0.2, "300 successes")
        by_worker: dict[str, int] = {}
        for rec in q.backend.get_many(ids):
            by_worker[rec.worker] = by_worker.get(rec.worker, 0) + 1
            assert rec.attempts == 1, rec  # each claimed once: no wasted claims
    assert set(by_worker) == set(names), by_worker
    assert sum(by_worker.values()) == 300


def test_retries_then_failure_without_stalling_other_partitions(q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    failing = q.submit("fail", ["kaput"], tries=3)
    divide = q.submit("divide", [1, 0])
    # While `failing` waits out its backoff, the other partitions keep running.
    quick = q.submit_many([("add", [i, 0]) for i in range(20)])
    with pytest.raises(TaskFailed, match="RuntimeError: kaput") as info:
        q.result(failing, timeout=60)
    assert info.value.attempts == 3
    rec = q.status(failing)
    assert (rec.status, rec.result, rec.attempts, rec.failures) == ("failed", None, 3, 3)
    drec = q.wait(divide, 60)
    blocked = {rec.partition, drec.partition}
    others = [r for r in q.backend.get_many(quick) if r.partition not in blocked]
    assert others and max(r.finished for r in others) < rec.finished
    # divide is fail_on=(ZeroDivisionError,): a retry would divide by zero again, so it fails at once.
    assert drec.status == "failed" and "ZeroDivisionError" in drec.error and drec.attempts == 1
    history = [text for _, text in q.backend.events(failing)]
    assert sum("retry after error" in h for h in history) == 2 and "failed by W1" in history[-1]


def test_flaky_task_retries_until_success(settings, q: YADTQ, procs: Procs) -> None:
    # p=0.5 with 30 tries: fails for good with probability 2**-30 per task. Backoff capped at 0.5 s:
    # uncapped, a task that failed nine times (2**-9) outlived the 90 s timeout on its backoffs alone.
    procs.worker("W1", settings=settings.replace(retry_backoff_max=0.5))
    ids = q.submit_many([{"task": "flaky", "args": [0.5, i], "tries": 30} for i in range(10)])
    values = [q.result(t, timeout=90) for t in ids]
    assert values == list(range(10))
    assert any(r.attempts > 1 for r in q.backend.get_many(ids))


def test_a_seed_format_message_from_any_kafka_client(settings, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    q.submit("add", [0, 0])  # creates the topic with its partitions
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    raw.send(settings.topic, json.dumps({"task-id": "d5750c0e-ed82", "task": "add", "args": [1, 2]}).encode())
    raw.flush()
    raw.close()
    rec = wait_for(lambda: _done(q, "d5750c0e-ed82"), 60, 0.1, "the seed task")
    assert {"status": rec.status, "result": rec.result} == {"status": "success", "result": 3}
    assert rec.attempts == 1 and rec.tries == settings.tries


def _done(q: YADTQ, tid: str):
    try:
        rec = q.status(tid)
    except TaskNotFound:
        return None
    return rec if rec.done else None


def test_counts_always_add_up(q: YADTQ, procs: Procs, r: redis.Redis) -> None:
    procs.worker("W1")
    ids = q.submit_many([("add", [i, 1]) for i in range(100)] + [("fail", ["x"])] * 3)
    seen = []
    while True:
        counts = q.backend.counts()
        seen.append(sum(counts.values()))
        if counts["success"] + counts["failed"] == len(ids):
            break
        time.sleep(0.01)
    assert set(seen) == {len(ids)}
    stored = sum(1 for _ in r.scan_iter(f"{q.settings.prefix}task:*", count=1000))
    assert stored == len(ids) == sum(r.zcard(q.backend.keys.status(s)) for s in STATUSES)

"""Bad input and faults: each must end in a clear error and lose nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from conftest import KAFKA_TEST_CONFIG, ROOT, Procs, run_cli, wait_for
from kafka import KafkaConsumer, KafkaProducer
from ledger_tasks import read_ledger

from worker_farm.chaos import run_chaos
from worker_farm.chaos_faults import FAULT_KINDS
from worker_farm.chaos_services import OwnedServices
from worker_farm.mixes import all_mixes
from yadtq.client.async_client import AsyncYADTQ
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import RET_CONNECT, BrokerUnavailable, MessageError, TaskNotFound
from yadtq.ops.ports import free_port
from yadtq.ops.services import start_broker


def test_bad_messages_fail_cleanly_and_the_worker_keeps_serving(settings: Settings, procs: Procs) -> None:
    s = settings.replace(max_message_bytes=2000)
    procs.settings = s
    procs.worker("W1", settings=s)
    with YADTQ(s) as q:
        q.submit("add", [0, 0])  # creates the topic
        raw = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
        bad = {
            "not-json": b"\x00\x01 this is not json",
            "no-name": json.dumps({"task-id": "b-noname", "args": [1]}).encode(),
            "unknown": json.dumps({"task-id": "b-unknown", "task": "teleport", "args": [1]}).encode(),
            "arity": json.dumps({"task-id": "b-arity", "task": "add", "args": [1, 2, 3]}).encode(),
            "types": json.dumps({"task-id": "b-types", "task": "multiply", "args": ["a", {}]}).encode(),
            "huge": json.dumps({"task-id": "b-huge", "task": "add", "args": ["x" * 5000, 1]}).encode(),
        }
        for value in bad.values():
            for p in range(s.partitions):  # every partition sees every kind of bad record
                raw.send(s.topic, value, partition=p)
        raw.flush()
        raw.close()
        after = q.submit_many([("add", [i, i]) for i in range(8)])
        assert [q.result(t, timeout=60) for t in after] == [2 * i for i in range(8)]

        expected = {
            "b-noname": "missing or invalid 'task'",
            "b-unknown": "unknown task 'teleport'",
            "b-arity": "add: too many positional arguments",
            "b-types": "multiply: argument 'a' must be float, got str 'a'",
            "b-huge": "exceeds the limit of 2000 bytes",
        }
        for tid, error in expected.items():
            rec = q.status(tid)
            assert rec.status == "failed" and error in rec.error and rec.result is None, (tid, rec)
        letters = q.live.dead_letters(100)
        assert len(letters) == len(bad) * s.partitions
        assert sum("not JSON" in e["error"] for e in letters) == s.partitions
        counts = q.backend.counts()
        assert counts == {"scheduled": 0, "queued": 0, "processing": 0, "success": 9, "failed": 5, "cancelled": 0,
            "expired": 0}

    dlq = KafkaConsumer(s.dlq_topic, bootstrap_servers=s.kafka_bootstrap, auto_offset_reset="earliest",
                        consumer_timeout_ms=5000)
    values = [m.value for m in dlq]
    dlq.close()
    # An oversized record is dead-lettered truncated to the message limit.
    assert sorted(values) == sorted(v[:s.max_message_bytes] for v in bad.values() for _ in range(s.partitions))
    wait_for(lambda: [e["event"] for e in procs.events("worker-W1")].count("task_rejected") == len(bad) * s.partitions,
             30, 0.1, "every rejection in the event log")
    assert procs.procs["W1"].poll() is None  # still serving


def test_kill9_mid_stream_loses_nothing_and_reruns_nothing_finished(settings: Settings, procs: Procs,
                                                                    r: redis.Redis) -> None:
    names = ["W1", "W2"]
    for n in names:
        procs.worker(n, "--tasks", "ledger_tasks")
    procs.wait_assigned(names)
    with YADTQ(settings) as q:
        ids = q.submit_many([("ledger_add", [i, 1, 0.02]) for i in range(300)])
        wait_for(lambda: q.backend.counts()["success"] >= 60, 60, 0.05, "some progress")
        victim = "W1"
        pid = procs.procs[victim].pid
        procs.kill9(victim)
        killed_at = time.time()
        finished_before = {rec.task_id for rec in q.backend.list("success", limit=1000) if rec.finished < killed_at}
        wait_for(lambda: q.backend.counts()["success"] == 300, 120, 0.2, "every task to succeed")
        recs = q.backend.get_many(ids)
    assert all(rec.status == "success" and rec.result == rec.args[0] + 1 for rec in recs)
    ledger = read_ledger(r, settings.prefix)
    assert set(ledger) == set(ids)
    rerun = {tid: runs for tid, runs in ledger.items() if len(runs) > 1}
    # Only the tasks the killed worker had running may run again (one per slot), and only once more.
    assert len(rerun) <= settings.concurrency, rerun
    for tid, runs in rerun.items():
        assert len(runs) == 2 and runs[0][0] == pid and runs[1][0] != pid and tid not in finished_before
    assert all(len(ledger[tid]) == 1 for tid in finished_before)
    assert len(finished_before) >= 60


def test_monitor_declares_a_killed_worker_dead(settings: Settings, procs: Procs, q: YADTQ) -> None:
    procs.monitor()
    procs.worker("W1")
    procs.worker("W2")
    wait_for(lambda: {n for n, w in q.live.workers().items() if w["status"] == "ALIVE"} == {"W1", "W2"},
             30, 0.1, "both workers ALIVE")
    q.submit("sleep", [60])  # W1 or W2 holds it when killed
    holder = wait_for(lambda: next((n for n, w in q.live.workers().items() if w.get("current_task")), None),
                      30, 0.1, "a worker busy with the sleep task")
    last_seen = q.live.workers()[holder]["last_heartbeat"]
    procs.kill9(holder)
    killed = time.time()
    wait_for(lambda: q.live.workers()[holder]["status"] == "DEAD", settings.dead_after + 10, 0.1, "DEAD")
    declared = time.time()
    assert declared - killed <= settings.dead_after + settings.heartbeat_interval + 3
    failure = q.live.failures(10)[0]
    assert failure["worker"] == holder and failure["last_heartbeat"] >= last_seen
    assert failure["declared_at"] - failure["last_heartbeat"] > settings.dead_after
    assert len(failure["tasks"]) == 1
    other = ({"W1", "W2"} - {holder}).pop()
    assert q.live.workers()[other]["status"] == "ALIVE"
    listing = run_cli(settings, "workers")
    assert f"DEAD {holder}" in listing.stdout and "ALIVE" in listing.stdout
    # It comes back under the same name: ALIVE again, the death stays in the history.
    procs.worker(holder)
    wait_for(lambda: q.live.workers()[holder]["status"] == "ALIVE", 30, 0.1, "ALIVE again")
    assert q.live.failures(10)[0]["worker"] == holder


def test_end_drains_and_stops_every_worker_and_the_monitor(settings: Settings, procs: Procs, q: YADTQ) -> None:
    procs.monitor()
    workers = [procs.worker("W1"), procs.worker("W2"), procs.worker("S1", "--standby")]
    procs.wait_assigned(["W1", "W2", "S1"])
    lines = [f"add {i} {i}" for i in range(40)] + ['{"task": "multiply", "args": [6, 7]}', "sleep 1",
                                                    'add "1 2', "end", "add 99 99"]
    out = run_cli(settings, "produce", settings.topic, str(settings.partitions), stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    assert "42 sent, 1 bad line(s) skipped, end sent" in out.stdout
    assert "line 43: skipped" in out.stderr
    for proc in [*workers, procs.procs["monitor"]]:
        assert proc.wait(timeout=60) == 0
    counts = q.backend.counts()
    assert counts == {"scheduled": 0, "queued": 0, "processing": 0, "success": 42, "failed": 0, "cancelled": 0,
            "expired": 0}


def test_sigterm_finishes_the_task_in_hand_then_leaves(settings: Settings, procs: Procs, q: YADTQ) -> None:
    w = procs.worker("W1")
    tid = q.submit("sleep", [2])
    wait_for(lambda: q.status(tid).status == "processing", 30, 0.05, "the task to start")
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=30) == 0
    rec = q.status(tid)
    assert rec.status == "success" and rec.attempts == 1
    assert [e["event"] for e in procs.events("worker-W1")][-1] == "worker_left"


DEAD_KAFKA = {"YADTQ_KAFKA_BOOTSTRAP": "127.0.0.1:{port}"}


@pytest.mark.parametrize("args", [
    ["worker", "--name", "Wx"], ["submit", "add", "1", "2"],
])
def test_dead_broker_at_startup_is_one_clear_line(settings: Settings, args: list[str]) -> None:
    port = free_port()
    started = time.monotonic()
    out = run_cli(settings, *args, env={"YADTQ_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}, stdin="add 1 2\n")
    assert out.returncode == RET_CONNECT, out
    assert time.monotonic() - started < 15
    assert out.stderr.strip() == f"yadtq: error: cannot reach Kafka broker at 127.0.0.1:{port}: Connection refused"


@pytest.mark.parametrize("args", [
    ["worker", "--name", "Wx"], ["monitor"], ["submit", "add", "1", "2"], ["produce", "t", "2"],
    ["status", "x"], ["result", "x"], ["tasks"], ["workers"],
])
def test_dead_redis_at_startup_is_one_clear_line(settings: Settings, args: list[str]) -> None:
    port = free_port()
    started = time.monotonic()
    out = run_cli(settings, *args, env={"YADTQ_REDIS_URL": f"redis://127.0.0.1:{port}/0"}, stdin="add 1 2\n")
    assert out.returncode == RET_CONNECT, out
    assert time.monotonic() - started < 15
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"yadtq: error: cannot reach Redis at redis://127.0.0.1:{port}/0:")


def _start_piped(settings: Settings, tmp_path: Path, label: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
    env.update(settings.env())
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    return subprocess.Popen([sys.executable, "-m", "yadtq", *args], env=env, cwd=tmp_path, text=True,
                            stdin=subprocess.PIPE, stdout=open(tmp_path / f"{label}.out", "w"),
                            stderr=open(tmp_path / f"{label}.err", "w"), start_new_session=True)


# Its own broker, started and killed here, is the embedded one: the Kafka lane would repeat it as is.
@pytest.mark.brokers("embedded")
def test_monitor_and_producer_wait_for_a_broker_that_is_not_there_yet(settings: Settings, procs: Procs,
                                                                      tmp_path: Path) -> None:
    port = free_port()
    s = settings.replace(kafka_bootstrap=f"127.0.0.1:{port}")
    procs.settings = s
    monitor = procs.monitor()
    producer = _start_piped(s, tmp_path, "produce", "produce", s.topic, str(s.partitions))
    procs.procs["produce"] = producer  # type: ignore[assignment]
    assert producer.stdin is not None
    producer.stdin.write("add 20 22\n")
    producer.stdin.flush()
    err = tmp_path / "produce.err"
    wait_for(lambda: "waiting for it" in err.read_text(), 30, 0.2, "the producer to say it waits")
    wait_for(lambda: any(e["event"] == "connection_lost" for e in procs.events("monitor")), 30, 0.2,
             "the monitor to say it waits")
    assert monitor.poll() is None and producer.poll() is None
    assert f"127.0.0.1:{port}" in err.read_text()
    broker = start_broker("127.0.0.1", port, tmp_path / "broker-logs")
    try:
        wait_for(lambda: "sent 1 task(s)" in (tmp_path / "produce.out").read_text(), 60, 0.2, "the line sent")
        producer.stdin.close()
        assert producer.wait(timeout=30) == 0
        events = [e["event"] for e in procs.events("producer")]
        assert events == ["connection_lost", "connection_restored"], events
        wait_for(lambda: any(e["event"] == "connection_restored" for e in procs.events("monitor")), 30, 0.2,
                 "the monitor to see the broker")
        procs.worker("W1")
        with YADTQ(s) as q:
            tid = q.backend.list_ids("queued", 10) or q.backend.list_ids("success", 10)
            assert len(tid) == 1
            assert q.result(tid[0], timeout=60) == 42
        assert monitor.poll() is None
    finally:
        procs.stop_all()
        broker.kill()
        broker.wait(timeout=10)


# Its own broker, started and killed here, is the embedded one: the Kafka lane would repeat it as is.
@pytest.mark.brokers("embedded")
def test_failed_submit_leaves_nothing_behind_and_a_retry_runs_once(settings: Settings, procs: Procs,
                                                                  tmp_path: Path, r: redis.Redis) -> None:
    port = free_port()
    # A publish would wait publish_timeout (60 s) for a broker that may come back; 3 s is enough here.
    s = settings.replace(kafka_bootstrap=f"127.0.0.1:{port}", publish_timeout=3.0)
    procs.settings = s
    broker = start_broker("127.0.0.1", port, tmp_path / "broker-logs")
    try:
        with YADTQ(s) as q:
            _ = q.producer  # the topic exists and the client has a producer
            broker.kill()
            broker.wait(timeout=10)
            with pytest.raises(BrokerUnavailable):
                q.submit("ledger_add", [1, 2], task_id="sub-1")
            with pytest.raises(TaskNotFound):
                q.status("sub-1")  # undone: nothing left to run later
            assert q.backend.counts()["queued"] == 0
            assert r.exists(q.backend.keys.withdrawn("sub-1"))
            out = run_cli(s, "submit", "ledger_add", "1", "2", env={"YADTQ_CONNECT_TIMEOUT": "1"})
            assert out.returncode == RET_CONNECT and q.backend.counts()["queued"] == 0
            broker = start_broker("127.0.0.1", port, tmp_path / "broker-logs")
            assert q.submit("ledger_add", [1, 2], task_id="sub-1") == "sub-1"
            assert q.submit("ledger_add", [1, 2], task_id="sub-1") == "sub-1"  # still queued: sent again
            with pytest.raises(MessageError, match="taken by a task with another body"):
                q.submit("ledger_add", [5, 5], task_id="sub-1")
            procs.worker("W1", "--tasks", "ledger_tasks")
            assert q.result("sub-1", timeout=90) == 3
            assert q.submit("ledger_add", [1, 2], task_id="sub-1") == "sub-1"  # finished: nothing sent
            wait_for(lambda: q.backend.counts()["processing"] == 0 and q.backend.counts()["queued"] == 0, 60, 0.2,
                     "every message dealt with")
            rec = q.status("sub-1")
            assert (rec.status, rec.result, rec.attempts) == ("success", 3, 1)
        assert len(read_ledger(r, s.prefix)["sub-1"]) == 1  # one task, one run
    finally:
        procs.stop_all()
        broker.kill()
        broker.wait(timeout=10)


def _kafka_io_threads() -> set[threading.Thread]:
    """kafka-python's I/O threads alive in this process: one for each client not closed yet."""
    return {t for t in threading.enumerate() if t.name.startswith("kafka-python-")}


@pytest.mark.brokers("embedded")  # its own broker, killed here, as in the test above
def test_producers_left_with_records_pending_in_a_broker_outage_still_close(settings: Settings,
                                                                           tmp_path: Path) -> None:
    """A client closed, or whose publish failed, while a record is pending to a broker that went away:
    its producer must still close (kafka-python's close() gives up, producer open, when its flush
    times out), or a long-running client (the API) keeps one more I/O thread reconnecting for good
    each time. Records not confirmed (`wait=False`) outlive close()'s 5 s here, as they would with
    the default publish_timeout (60 s), the records' delivery timeout."""
    port = free_port()
    s = settings.replace(kafka_bootstrap=f"127.0.0.1:{port}", publish_timeout=6.0)
    broker = start_broker("127.0.0.1", port, tmp_path / "broker-logs")
    loop = asyncio.new_event_loop()
    try:
        before = _kafka_io_threads()
        q = YADTQ(s)
        aq = loop.run_until_complete(AsyncYADTQ(s).connect())
        q.submit("add", [1, 1])
        loop.run_until_complete(aq.submit("add", [2, 2]))  # each client has its producer now
        ours = _kafka_io_threads() - before
        assert len(ours) == 2, ours
        broker.kill()
        broker.wait(timeout=10)
        q.publish([q.message("add", [3, 3])], wait=False)
        q.close()  # does not raise: the record, not confirmed, is dropped at its delivery timeout
        with pytest.raises(BrokerUnavailable):
            loop.run_until_complete(aq.submit("add", [4, 4]))
        wait_for(lambda: not any(t.is_alive() for t in ours), s.publish_timeout + 15, 0.2,
                 "the producers' I/O threads to end")
        loop.run_until_complete(aq.aclose())
    finally:
        loop.close()
        broker.kill()
        broker.wait(timeout=10)


def test_requeue_accepts_a_lapsed_processing_task_but_not_a_live_one(settings: Settings, procs: Procs,
                                                                     r: redis.Redis) -> None:
    w = procs.worker("W1", "--tasks", "ledger_tasks")
    procs.wait_assigned(["W1"])
    with YADTQ(settings) as q:
        # Long enough to be refused while it runs (a CLI call takes ~1 s); it runs in full once more at the end.
        tid = q.submit("ledger_add", [1, 2, 6])
        wait_for(lambda: q.status(tid).status == "processing", 30, 0.05, "the task to start")
        out = run_cli(settings, "requeue", tid)
        assert out.returncode != 0 and "running" in out.stderr, out  # its worker is alive and renewing
        procs.kill9("W1")
        assert w.poll() is not None
        wait_for(lambda: run_cli(settings, "requeue", tid).returncode == 0, settings.lease + 30, 0.5,
                 "requeue to accept the task once its lease lapsed")
        rec = q.status(tid)
        assert rec.status == "queued" and rec.attempts == 0
        assert any("requeued (was processing)" in text for _, text in q.backend.events(tid))
        procs.worker("W2", "--tasks", "ledger_tasks")
        assert q.result(tid, timeout=120) == 3
    runs = read_ledger(r, settings.prefix)[tid]
    assert len(runs) == 2 and runs[0][0] == w.pid  # the cut-off run, then one more


@pytest.mark.serial
@pytest.mark.timeout(600)
def test_chaos_with_every_fault_at_once(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        broker_kind: str) -> None:
    """kill -9 of workers, SIGSTOP/SIGCONT of one, broker kill and restart, Redis kill and restart
    on its append-only file, during a mixed workload at concurrency 4, judged by the ledger.
    The run owns its broker: the embedded one (a restart loses the log) or an Apache Kafka node."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    owned = OwnedServices(tmp_path / "owned", kafka=KAFKA_TEST_CONFIG if broker_kind == "kafka" else None)
    try:
        # 4 partitions: the embedded broker recreates a lost topic with 4 when a client asks for it first.
        s = settings.replace(kafka_bootstrap=owned.kafka_bootstrap, redis_url=owned.redis_url, partitions=4,
                             concurrency=4, lease=3.0, session_timeout_ms=3000, heartbeat_interval_ms=500,
                             requeue_stale_after=5.0)
        lines: list[str] = []
        # Faults for 45 s (~22 faults, each kind ~5 times; run_chaos goes on past it until every kind
        # came). The mixes' tasks finish only once the faults stop (a broker or Redis restart every
        # ~4 s keeps them behind), so the fault phase is most of the run: at 90 s it was ~100 s a broker.
        report = run_chaos(s, tasks=900, workers=3, standby=1, kill_every=2.0, max_minutes=0.75, drain_minutes=3,
                           seed=10, pause=0.004, say=lines.append, faults=FAULT_KINDS, services=owned.control(),
                           monitor=True, mixed=True, mixes=all_mixes())
        figures = {**report.summary(), "counts": report.counts}
        print(figures)
        assert all(report.faults.get(kind, 0) >= 1 for kind in FAULT_KINDS), figures
        assert report.lost == 0, (figures, lines[-20:])
        assert report.run_twice_after_completion == 0, (figures, report.unexplained[:10])
        assert report.counts_add_up and report.counts["success"] == 900, figures
        assert report.alive_at_end, (figures, lines[-20:])
        assert not report.mix_problems, report.mix_problems
    finally:
        owned.stop()

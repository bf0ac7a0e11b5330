"""Issue 3's guarantees on real processes: crashes at each point, zombies,
service restarts, time limits, dead letters."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis
from conftest import Procs, ServiceAddrs, run_cli, wait_for
from ledger_tasks import read_ledger

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import TaskFailed
from yadtq.ops.ports import free_port
from yadtq.ops.services import start_broker, start_redis
from yadtq.worker.crash import CRASH_EXIT_CODE


def _ledger_tasks(q: YADTQ, n: int, pause: float = 0.0) -> list[str]:
    return q.submit_many([("ledger_add", [i, 1, pause]) for i in range(n)])


def test_crash_during_a_task_reruns_it_exactly_once_more(settings: Settings, procs: Procs, q: YADTQ,
                                                         r: redis.Redis) -> None:
    s = settings.replace(partitions=2)
    procs.settings = s
    # One slot: the crash cuts off exactly one run (test_chaos covers crashes under concurrency).
    crasher = procs.worker("W1", "--tasks", "ledger_tasks", "--crash", "after:3@during", "--concurrency", "1",
                           settings=s)
    procs.wait_assigned(["W1"])
    with YADTQ(s) as q2:
        ids = _ledger_tasks(q2, 10)
        assert crasher.wait(timeout=60) == CRASH_EXIT_CODE
        procs.worker("W2", "--tasks", "ledger_tasks", settings=s)
        wait_for(lambda: q2.backend.counts()["success"] == 10, 90, 0.2, "all 10 to succeed")
        ledger = read_ledger(r, s.prefix)
        twice = {tid: runs for tid, runs in ledger.items() if len(runs) > 1}
        assert len(twice) == 1, ledger
        (tid, runs), = twice.items()
        assert runs[0][0] == crasher.pid and runs[1][0] != crasher.pid
        rec = q2.status(tid)
        assert rec.attempts == 2 and rec.worker == "W2" and rec.status == "success"
        assert all(len(ledger[t]) == 1 for t in ids if t != tid)


def test_crash_after_complete_skips_the_redelivered_task(settings: Settings, procs: Procs,
                                                         r: redis.Redis) -> None:
    s = settings.replace(partitions=1)
    procs.settings = s
    crasher = procs.worker("W1", "--tasks", "ledger_tasks", "--crash", "after:2@after-complete", "--concurrency", "1",
                           settings=s)
    procs.wait_assigned(["W1"])
    with YADTQ(s) as q:
        ids = _ledger_tasks(q, 6)
        assert crasher.wait(timeout=60) == CRASH_EXIT_CODE
        assert q.status(ids[1]).status == "success"  # stored before the crash
        procs.worker("W2", "--tasks", "ledger_tasks", settings=s)
        wait_for(lambda: q.backend.counts()["success"] == 6, 90, 0.2, "all 6 to succeed")
        ledger = read_ledger(r, s.prefix)
        assert all(len(ledger[t]) == 1 for t in ids), ledger
        skipped = wait_for(lambda: [e["task_id"] for e in procs.events("worker-W2") if e["event"] == "task_skipped"],
                           30, 0.1, "W2's event log to show the skip")
        # Redelivered from the last commit: the crashed task, and any finished before it.
        assert ids[1] in skipped and set(skipped) <= {ids[0], ids[1]}
        assert q.status(ids[1]).worker == "W1" and q.status(ids[1]).attempts == 1


def test_zombie_worker_is_fenced_out(settings: Settings, procs: Procs, r: redis.Redis) -> None:
    s = settings.replace(partitions=1)
    procs.settings = s
    zombie = procs.worker("W1", "--tasks", "ledger_tasks", settings=s)
    procs.wait_assigned(["W1"])
    with YADTQ(s) as q:
        tid = q.submit("ledger_add", [20, 22, 3.0])
        wait_for(lambda: len(read_ledger(r, s.prefix).get(tid, [])) == 1, 30, 0.05, "the zombie to start it")
        zombie.send_signal(signal.SIGSTOP)
        try:
            procs.worker("W2", "--tasks", "ledger_tasks", settings=s)
            # W2 gets the partition after the session timeout and the claim after the lease.
            rec = wait_for(lambda: q.status(tid) if q.status(tid).status == "success" else None,
                           60, 0.2, "W2 to finish the task")
            assert rec.worker == "W2" and rec.attempts == 2 and rec.result == 42
        finally:
            zombie.send_signal(signal.SIGCONT)
        wait_for(lambda: any(e["event"] == "task_fenced" for e in procs.events("worker-W1")), 30, 0.2,
                 "the zombie's late completion to be fenced out")
        final = q.status(tid)
        assert (final.status, final.worker, final.attempts, final.result) == ("success", "W2", 2, 42)
        assert [pid for pid, _ in read_ledger(r, s.prefix)[tid]] == [zombie.pid, procs.procs["W2"].pid]
        assert q.backend.counts() == {"scheduled": 0, "queued": 0, "processing": 0, "success": 1, "failed": 0, "cancelled": 0,
            "expired": 0}


# Its own broker, started and killed here, is the embedded one: the Kafka lane would repeat it as is.
@pytest.mark.brokers("embedded")
def test_broker_restart_loses_no_queued_task(settings: Settings, procs: Procs, tmp_path: Path,
                                             r: redis.Redis) -> None:
    port = free_port()
    broker = start_broker("127.0.0.1", port, tmp_path / "broker-logs")
    s = settings.replace(kafka_bootstrap=f"127.0.0.1:{port}", requeue_stale_after=2.0)
    procs.settings = s
    try:
        with YADTQ(s) as q:
            ids = _ledger_tasks(q, 30)  # no worker yet: they wait on the topic
            broker.terminate()
            broker.wait(timeout=10)
            broker = start_broker("127.0.0.1", port, tmp_path / "broker-logs")  # empty: memory only
            procs.start("monitor", "monitor", settings=s)
            procs.worker("W1", "--tasks", "ledger_tasks", settings=s)
            wait_for(lambda: q.backend.counts()["success"] == 30, 90, 0.2, "every task after the restart")
            ledger = read_ledger(r, s.prefix)
            assert sorted(ledger) == sorted(ids) and all(len(runs) == 1 for runs in ledger.values())
            assert any(e["event"] == "tasks_requeued" for e in procs.events("monitor"))
    finally:
        procs.stop_all()
        broker.terminate()
        broker.wait(timeout=10)


def test_redis_restart_loses_no_record_and_workers_reconnect(services: ServiceAddrs, settings: Settings,
                                                             procs: Procs, r: redis.Redis) -> None:
    procs.monitor()
    procs.worker("W1", "--tasks", "ledger_tasks")
    procs.wait_assigned(["W1"])
    with YADTQ(settings) as q:
        ids = _ledger_tasks(q, 60, pause=0.05)
        wait_for(lambda: q.backend.counts()["success"] >= 10, 60, 0.05, "some progress")
        services.redis_proc.kill()  # SIGKILL: only the append-only file keeps the data
        services.redis_proc.wait(timeout=10)
        # Redis stays down until the worker has met the outage: a restart quicker than the worker's next
        # call would be bridged by redis-py's reconnect and test nothing.
        wait_for(lambda: _met_outage(procs), 60, 0.1, "W1 noticing Redis is down")
        services.redis_proc = start_redis("127.0.0.1", services.redis_port, services.data_dir, services.log_dir)
        wait_for(lambda: _success(q) == 60, 120, 0.3, "all 60 after the Redis restart")
        counts = q.backend.counts()
        assert counts == {"scheduled": 0, "queued": 0, "processing": 0, "success": 60, "failed": 0, "cancelled": 0,
            "expired": 0}
        assert len(q.backend.get_many(ids)) == 60
    ledger = read_ledger(r, settings.prefix)
    assert sorted(ledger) == sorted(ids)
    # At most the tasks in hand (one per slot): their claims may be lost with the last second of the AOF.
    assert sum(len(runs) > 1 for runs in ledger.values()) <= settings.concurrency
    assert procs.procs["W1"].poll() is None and procs.procs["monitor"].poll() is None
    assert any(e["event"] == "connection_restored" and e.get("service") == "redis" for e in procs.events("worker-W1"))


def _met_outage(procs: Procs) -> bool:
    try:
        return any(e["event"] == "connection_lost" and e.get("service") == "redis" for e in procs.events("worker-W1"))
    except ValueError:  # a line still being written
        return False


def _success(q: YADTQ) -> int:
    try:
        return q.backend.counts()["success"]
    except redis.ConnectionError:
        return -1


def test_time_limits_fail_the_attempt_and_the_worker_keeps_serving(settings: Settings, procs: Procs) -> None:
    procs.worker("W1", "--time-limit", "1.5")
    with YADTQ(settings) as q:
        per_task = q.submit("sleep", [30], tries=2, time_limit=0.5)
        default = q.submit("sleep", [30], tries=1)
        with pytest.raises(TaskFailed, match="TimeLimitExceeded: time limit of 0.5s exceeded") as info:
            q.result(per_task, timeout=60)
        assert info.value.attempts == 2
        with pytest.raises(TaskFailed, match="time limit of 1.5s exceeded"):
            q.result(default, timeout=60)
        assert q.result(q.submit("sleep", [0.1], time_limit=5), timeout=30) == 0.1
        assert q.result(q.submit("add", [2, 2]), timeout=30) == 4


def test_dead_letters_list_and_requeue(settings: Settings, procs: Procs) -> None:
    first = procs.worker("W1")  # no ledger_tasks module: the task is unknown here
    with YADTQ(settings) as q:
        tid = q.submit("ledger_add", [1, 2], unchecked=True)  # W1 lacks it: the worker judges
        doomed = q.submit("fail", ["always"], tries=2)
        assert q.wait(tid, 60).error == "unknown task 'ledger_add'"
        assert q.wait(doomed, 60).status == "failed"
        listing = run_cli(settings, "dlq", "list")
        assert f"{tid} ledger_add" in listing.stdout and "unknown task 'ledger_add'" in listing.stdout
        assert f"{doomed} fail" in listing.stdout and "RuntimeError: always" in listing.stdout
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        procs.worker("W2", "--tasks", "ledger_tasks")  # the fix is deployed
        again = run_cli(settings, "dlq", "requeue", tid)
        assert again.returncode == 0 and again.stdout.strip() == tid
        assert q.result(tid, timeout=60) == 3
        rec = q.status(tid)
        assert rec.worker == "W2" and rec.attempts == 1
        refused = run_cli(settings, "dlq", "requeue", tid)
        assert refused.returncode == 1 and "is success; only failed" in refused.stderr

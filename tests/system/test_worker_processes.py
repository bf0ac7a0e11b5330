"""Engine guarantees only processes show: scale-out, hard time limits, poison tasks, a frozen claim."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

import pytest
import redis
from conftest import Procs, wait_for
from ledger_tasks import read_ledger

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import free_port
from yadtq.ops.services import start_broker, start_redis
from yadtq.worker import EXIT_HARD_TIME_LIMIT


def _respawning(procs: Procs, name: str, settings: Settings, until: object, timeout: float = 90) -> list[int]:
    """Runs worker `name` again each time it dies (as the farm does) until `until()`; returns exit codes."""
    codes: list[int] = []
    deadline = time.monotonic() + timeout
    proc = procs.worker(name, "--tasks", "ledger_tasks", settings=settings)
    while not until():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up; exit codes so far {codes}"
        code = proc.poll()
        if code is not None:
            codes.append(code)
            proc = procs.worker(name, "--tasks", "ledger_tasks", settings=settings)
        time.sleep(0.1)
    return codes


def test_a_joining_worker_takes_its_share_and_a_dead_ones_share_moves(settings: Settings, procs: Procs) -> None:
    s = settings.replace(partitions=6)
    procs.settings = s
    procs.worker("W1", settings=s)
    procs.worker("W2", settings=s)
    got = procs.wait_assigned(["W1", "W2"])
    assert sorted(len(v) for v in got.values()) == [3, 3]
    with YADTQ(s) as q:
        before = q.submit_many([("sleep", [0.05]) for _ in range(60)])
        procs.worker("W3", settings=s)
        wait_for(lambda: len(procs.assigned("W3") or []) == 2, 60, 0.2, "W3 to get its share")
        after = q.submit_many([("sleep", [0.05]) for _ in range(60)])
        recs = [q.wait(t, 60) for t in before + after]
        assert all(r.status == "success" for r in recs)
        assert any(r.worker == "W3" for r in recs), "the joining worker ran no task"
        procs.kill9("W1")
        wait_for(lambda: sorted((procs.assigned("W2") or []) + (procs.assigned("W3") or [])) == list(range(6)),
                 60, 0.2, "W1's share to move to W2 and W3")
        last = q.submit_many([("add", [i, 1]) for i in range(30)])
        assert [q.result(t, timeout=60) for t in last] == [i + 1 for i in range(30)]


def test_full_buffers_stop_fetching_and_a_rebalance_while_paused_loses_nothing(settings: Settings, procs: Procs,
                                                                                r: redis.Redis) -> None:
    """A partition whose buffer is full is paused at the consumer until it drains. kafka-python keeps
    the paused flag of a partition a member keeps across a rebalance, while the worker starts each
    partition it is given afresh: without resuming every partition it is given, W1's kept partitions
    would never be fetched again (their tasks never run)."""
    s = settings.replace(max_buffered=10)
    procs.settings = s
    procs.worker("W1", "--tasks", "ledger_tasks", "--concurrency", "2", settings=s)
    procs.wait_assigned(["W1"])
    with YADTQ(s) as q:
        ids = q.submit_many([("ledger_add", [i, 1, 0.02]) for i in range(400)])
        wait_for(lambda: sum(1 for e in procs.events("worker-W1") if e["event"] == "partitions_paused"), 30, 0.1,
                 "W1's buffers full")
        procs.worker("W2", "--tasks", "ledger_tasks", "--concurrency", "2", settings=s)
        wait_for(lambda: len(procs.assigned("W2") or []) == 2, 60, 0.2, "W2 to get its share")
        wait_for(lambda: all(rec.status == "success" for rec in q.backend.get_many(ids)), 120, 0.2,
                 "every task done")
        ledger = read_ledger(r, s.prefix)
        assert [t for t in ids if len(ledger.get(t, [])) != 1] == [], "a task ran twice or never"
        assert 0 < sum(1 for rec in q.backend.get_many(ids) if rec.worker == "W1") < len(ids)


def test_a_task_that_ignores_its_time_limit_ends_its_worker_and_is_quarantined(settings: Settings, procs: Procs,
                                                                             r: redis.Redis) -> None:
    s = settings.replace(time_limit_grace=0.5, max_lost_runs=2, lease=2.0)
    procs.settings = s
    with YADTQ(s) as q:
        tid = q.submit("ledger_block", [60], time_limit=0.5, tries=5)
        ok = q.submit("add", [1, 1])
        codes = _respawning(procs, "W1", s, lambda: q.status(tid).status == "failed")
        rec = q.status(tid)
        assert EXIT_HARD_TIME_LIMIT in codes
        assert "its worker died 2 times" in (rec.error or "") and "W1" in (rec.error or "")
        assert len(read_ledger(r, s.prefix)[tid]) == 2  # run twice, each cut off; never a third time
        assert q.result(ok, timeout=30) == 2
        assert any(e["task_id"] == tid for e in q.live.dead_letters(50))
        wait_for(lambda: {"worker_hard_limit", "task_quarantined"} <= {e["event"] for e in procs.events("worker-W1")},
                 10, 0.1, "the hard limit and the quarantine in the event log")


@pytest.mark.parametrize("how", ["exit", "segv"])
def test_a_task_that_kills_its_worker_is_quarantined_and_the_rest_run(settings: Settings, procs: Procs,
                                                                     r: redis.Redis, how: str) -> None:
    s = settings.replace(max_lost_runs=3, lease=2.0, partitions=1)
    procs.settings = s
    with YADTQ(s) as q:
        poison = q.submit("ledger_die", [how], tries=10)
        after = q.submit_many([("add", [i, 0]) for i in range(20)])
        codes = _respawning(procs, "W1", s,
                            lambda: q.backend.counts()["success"] == 20 and q.status(poison).status == "failed")
        rec = q.status(poison)
        assert rec.status == "failed" and "its worker died 3 times" in (rec.error or ""), rec
        assert len(read_ledger(r, s.prefix)[poison]) == 3
        assert len(codes) == 3 and all(c != 0 for c in codes), codes
        assert [q.result(t, timeout=10) for t in after] == list(range(20))


def test_a_memory_blow_up_under_a_resource_limit_fails_the_task_not_the_worker(settings: Settings,
                                                                              procs: Procs) -> None:
    proc = procs.worker("W1", "--tasks", "ledger_tasks", "--concurrency", "2")
    procs.wait_assigned(["W1"])
    with open(f"/proc/{proc.pid}/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.prlimit(proc.pid, resource.RLIMIT_AS, (vm + (512 << 20), vm + (512 << 20)))
    with YADTQ(settings) as q:
        hog = q.submit("ledger_die", ["memory"], tries=1)
        rec = q.wait(hog, 60)
        assert rec.status == "failed" and "MemoryError" in (rec.error or ""), rec
        assert q.result(q.submit("add", [2, 3]), timeout=30) == 5
    assert proc.poll() is None


def test_a_claim_that_lapsed_while_its_worker_was_frozen_is_not_run(settings: Settings, procs: Procs,
                                                                     r: redis.Redis) -> None:
    """SIGSTOP between claim and start: the task runs once, on the other worker."""
    s = settings.replace(partitions=1, lease=2.0, concurrency=1)
    procs.settings = s
    frozen = procs.worker("W1", "--tasks", "ledger_tasks", settings=s)
    procs.wait_assigned(["W1"])
    with YADTQ(s) as q:
        first = q.submit("ledger_add", [1, 1, 4.0])  # occupies W1's only slot
        wait_for(lambda: first in read_ledger(r, s.prefix), 30, 0.05, "W1 to start the first task")
        second = q.submit("ledger_add", [2, 2, 0.0])
        wait_for(lambda: any(e["event"] == "task_received" and e.get("task_id") == second
                             for e in procs.events("worker-W1")), 30, 0.05, "W1 to buffer the second task")
        frozen.send_signal(signal.SIGSTOP)
        try:
            procs.worker("W2", "--tasks", "ledger_tasks", settings=s)
            wait_for(lambda: q.status(second).status == "success" and q.status(first).status == "success",
                     90, 0.2, "W2 to run both tasks")
        finally:
            frozen.send_signal(signal.SIGCONT)
            resumed = time.time()

        def w1_let_go_of_second() -> bool:
            """W1, awake, has dealt with the second task in its buffer (skipped it, or ran it: the ledger
            tells), or learnt that its partition was taken and dropped its buffer."""
            events = procs.events("worker-W1")
            return any(e.get("task_id") == second and e["event"] not in ("task_received", "task_started")
                       or e["event"] == "partitions_revoked" and 0 in e["partitions"] and e["ts"] >= resumed
                       for e in events)
        wait_for(w1_let_go_of_second, 60, 0.1, "W1 to let go of the second task")
        ledger = read_ledger(r, s.prefix)
        assert len(ledger[second]) == 1, ledger[second]
        assert frozen.poll() is None or frozen.returncode == 0




def test_a_redis_stall_longer_than_the_poll_limit_keeps_the_worker_in_its_group(
        settings: Settings, procs: Procs, tmp_path: Path) -> None:
    """Redis frozen (SIGSTOP) past max_poll_interval: the worker keeps polling Kafka with its
    partitions paused, keeps its membership, and resumes within seconds of Redis's return."""
    port = free_port()
    private = start_redis("127.0.0.1", port, tmp_path / "rdata", tmp_path / "rlogs")
    s = settings.replace(redis_url=f"redis://127.0.0.1:{port}/0", max_poll_interval_ms=10_000, lease=30.0)
    procs.settings = s
    try:
        worker = procs.worker("W1", settings=s)
        procs.wait_assigned(["W1"])
        with YADTQ(s) as q:
            first = q.submit_many([("sleep", [0.02]) for _ in range(20)])
            assert all(q.wait(t, 60).status == "success" for t in first)
            stalled_at = time.time()
            private.send_signal(signal.SIGSTOP)
            try:
                time.sleep(15)  # longer than max_poll_interval_ms: a blocked loop would be dropped
            finally:
                private.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
            later = q.submit_many([("add", [i, i]) for i in range(20)])
            assert [q.result(t, timeout=60) for t in later] == [2 * i for i in range(20)]
            took = time.monotonic() - resumed
        all_events = procs.events("worker-W1")
        events = [e["event"] for e in all_events]
        lost = [e for e in all_events if e["event"] == "partitions_revoked" and e["partitions"] and e["ts"] > stalled_at]
        assert not lost, f"the worker left the group during the stall: {lost}"
        assert "connection_lost" in events and "connection_restored" in events
        assert worker.poll() is None
        print(f"tasks flowed again {took:.1f}s after Redis returned")
    finally:
        private.kill()
        private.wait(timeout=10)


@pytest.mark.brokers("embedded")  # a private broker: the hang was in the clients, whatever the broker
def test_a_worker_stopped_while_its_broker_and_redis_are_frozen_exits_within_seconds(
        settings: Settings, procs: Procs, tmp_path: Path) -> None:
    """SIGINT to a worker while its broker and Redis are frozen (SIGSTOP), as when everything is stopped
    at once: each goodbye waits at most `connect_timeout`, and the process exits soon after it logged
    `worker_left` (it used to wait 30 s on LeaveGroup, then for ever on its last Redis writes)."""
    kafka_port, redis_port = free_port(), free_port()
    broker = start_broker("127.0.0.1", kafka_port, tmp_path / "blogs")
    redis_proc = start_redis("127.0.0.1", redis_port, tmp_path / "rdata", tmp_path / "rlogs")
    s = settings.replace(kafka_bootstrap=f"127.0.0.1:{kafka_port}", redis_url=f"redis://127.0.0.1:{redis_port}/0",
                         connect_timeout=1.0)
    procs.settings = s
    try:
        worker = procs.worker("W1", settings=s)
        procs.wait_assigned(["W1"])
        stopped = time.monotonic()
        worker.send_signal(signal.SIGINT)
        for service in (broker, redis_proc):
            os.killpg(service.pid, signal.SIGSTOP)
        # The loop's Redis step (2 s socket timeout), the final commit, the Kafka goodbyes and the Redis
        # goodbye (1 s each): about 5 s; 15 s is well under the old hang.
        wait_for(lambda: worker.poll() is not None, 15, 0.1, "the worker to exit")
        took, exited = time.monotonic() - stopped, time.time()
        (left,) = [e["ts"] for e in procs.events("worker-W1") if e["event"] == "worker_left"]
        assert exited - left < 5, f"the process lived {exited - left:.1f}s after worker_left"
        assert worker.returncode == 0, procs.output("W1")
        print(f"the worker exited {took:.1f}s after SIGINT")
    finally:
        for service in (broker, redis_proc):
            os.killpg(service.pid, signal.SIGCONT)
            os.killpg(service.pid, signal.SIGKILL)
            service.wait(timeout=10)

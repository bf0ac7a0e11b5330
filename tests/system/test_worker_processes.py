"""Engine guarantees only processes show: scale-out, hard time limits, poison tasks, a frozen claim."""

from __future__ import annotations

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
from yadtq.ops.services import start_redis
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

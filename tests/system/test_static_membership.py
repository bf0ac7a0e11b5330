"""Failover through the group protocol, on both brokers: a worker killed with kill -9 and started
again under its name serves again with nothing lost or run twice, and a clean stop hands its
partitions over at once. On Apache Kafka workers are static members (KIP-345): the restarted worker
gets its own partitions back without the other worker stopping, and a clean stop leaves the group
explicitly (a static member's close alone would not). The embedded broker keeps dynamic members.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis
from conftest import Procs, ServiceAddrs, wait_for
from ledger_tasks import read_ledger

from yadtq.client.client import YADTQ
from yadtq.config import Settings


def _revokes(procs: Procs, name: str, after: float) -> list[list[int]]:
    return [e["partitions"] for e in procs.events(f"worker-{name}")
            if e["event"] == "partitions_revoked" and e["partitions"] and e["ts"] > after]


def _cut_off(r: redis.Redis, prefix: str, pid: int) -> set[str]:
    """Tasks whose first run was in process `pid`, which was killed: mid-run, or after the run but
    before its outcome was stored (either way the task runs again)."""
    return {tid for tid, runs in read_ledger(r, prefix).items() if runs[0][0] == pid}


def test_a_worker_killed_and_restarted_under_its_name_gets_its_partitions_back(
        settings: Settings, procs: Procs, r: redis.Redis, broker_kind: str) -> None:
    static = broker_kind == "kafka"
    # Static: a session longer than a worker's start on a loaded machine (20 s seen at a load of 40),
    # so the restarted worker comes back before the broker gives up on it (the point of static membership).
    s = settings.replace(session_timeout_ms=60_000, static_membership="auto") if static else settings
    procs.settings = s
    for name in ("W1", "W2"):
        procs.worker(name, "--tasks", "ledger_tasks", settings=s)
    held = procs.wait_assigned(["W1", "W2"])["W1"]
    with YADTQ(s) as q:
        ids = q.submit_many([("ledger_add", [i, 1, 0.02]) for i in range(60)])
        wait_for(lambda: any(q.status(t).worker == "W1" for t in ids[:30] if q.status(t).done), 30, 0.05,
                 "W1 to finish a task")
        killed = procs.procs["W1"].pid
        procs.kill9("W1")
        killed_at = time.time()
        procs.worker("W1", "--tasks", "ledger_tasks", settings=s)
        ids += q.submit_many([("ledger_add", [i, 1, 0.0]) for i in range(60, 100)])
        back = wait_for(lambda: [e for e in procs.events("worker-W1") if e["event"] == "partitions_assigned"
                                 and e["partitions"] and e["ts"] > killed_at], 90, 0.2, "W1 to serve again")
        ids += q.submit_many([("ledger_add", [i, 1, 0.0]) for i in range(100, 140)])
        wait_for(lambda: q.backend.counts()["success"] == 140, 90, 0.2, "all 140 tasks to succeed")
        assert "W1" in {q.status(t).worker for t in ids[100:]}  # the restarted worker serves
    ledger = read_ledger(r, s.prefix)
    assert set(ledger) == set(ids)
    again = {t for t, runs in ledger.items() if len(runs) > 1}
    assert again <= _cut_off(r, s.prefix, killed), ledger  # twice only when the kill cut the first run off
    assert all(len(ledger[t]) <= 2 for t in ids)
    if static:
        assert back[0]["partitions"] == held  # its own partitions, from the broker
        assert _revokes(procs, "W2", killed_at) == []  # and W2 never stopped


def test_a_clean_stop_hands_its_partitions_over_at_once(settings: Settings, procs: Procs, services: ServiceAddrs,
                                                        broker_kind: str) -> None:
    static = broker_kind == "kafka"
    s = settings.replace(session_timeout_ms=30_000, static_membership="auto") if static else settings
    procs.settings = s
    for name in ("W1", "W2"):
        procs.worker(name, settings=s)
    held = procs.wait_assigned(["W1", "W2"])["W1"]
    with YADTQ(s) as q:
        q.result(q.submit("add", [0, 0]), timeout=30)
        stopped_at = time.time()
        procs.procs["W1"].terminate()
        assert procs.procs["W1"].wait(timeout=30) == 0
        wait_for(lambda: sorted(procs.assigned("W2") or []) == list(range(s.partitions)), 40, 0.1,
                 "W2 to take W1's partitions")
        ids = q.submit_many([("add", [i, 1]) for i in range(40)])
        assert [q.result(t, timeout=30) for t in ids] == [i + 1 for i in range(40)]
        assert {q.status(t).partition for t in ids} & set(held)  # W1's partitions, served by W2
        assert {q.status(t).worker for t in ids} == {"W2"}
    if static:  # W1 left the group itself: the broker did not wait out its 30 s session
        assert services.cluster is not None
        logs = list(Path(services.cluster.log_dir).rglob("server.log"))
        left = f"[Group {s.group}] Member W1-"
        wait_for(lambda: any(left in line and "explicit `LeaveGroup` request" in line
                             for p in logs for line in p.read_text(errors="replace").splitlines()),
                 10, 0.2, "the broker's log to show W1's LeaveGroup")
        assert time.time() < stopped_at + s.session_timeout_ms / 1000


def test_an_evicted_worker_reads_a_partition_given_back_from_its_commit(
        settings: Settings, procs: Procs, r: redis.Redis) -> None:
    """W1 runs a task and is stopped (SIGSTOP) past its session and its claim's lease: the standby S1
    takes the partition and runs the task again. S1 is frozen mid-run (SIGSTOP, so its run cannot end
    however slow the rest is). W1, continued, finds its own run's outcome discarded (S1's claim
    replaced it), rejoins the group and, the only live worker, gets the partition back; S1 is then
    killed. The task must still finish: W1 reads the partition from its committed offset, not from
    past the task it had seen as dealt with before it was evicted."""
    s = settings.replace(partitions=1, lease=3.0)
    procs.settings = s
    w1 = procs.worker("W1", "--tasks", "ledger_tasks", settings=s)
    s1 = procs.worker("S1", "--tasks", "ledger_tasks", "--standby", settings=s)
    wait_for(lambda: procs.assigned("W1") == [0] and procs.assigned("S1") == [], 60, 0.2, "W1 to own the partition")
    run_s = 8.0

    def runs_of(tid: str) -> list[int]:
        return [pid for pid, _ in read_ledger(r, s.prefix).get(tid, [])]

    with YADTQ(s) as q:
        tid = q.submit("ledger_add", [1, 2, run_s])
        # The ledger line, not the status: a claim is stored before the task's body starts, and W1
        # stopped between the two would write its line only after S1's.
        wait_for(lambda: runs_of(tid) == [w1.pid], 30, 0.05, "W1 to run the task")
        stopped = time.monotonic()
        os.kill(w1.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: runs_of(tid) == [w1.pid, s1.pid], 60, 0.05, "S1 to take the partition and run the task")
            os.kill(s1.pid, signal.SIGSTOP)
            # W1's own run is over by the time it continues: its outcome is discarded at once.
            time.sleep(max(0.0, stopped + run_s + 0.5 - time.monotonic()))  # a run's length, not a guess
        finally:
            continued = time.time()
            os.kill(w1.pid, signal.SIGCONT)
        wait_for(lambda: [e for e in procs.events("worker-W1") if e["event"] == "partitions_assigned"
                          and e["partitions"] == [0] and e["ts"] > continued], 30, 0.1, "W1 to get the partition back")
        assert q.status(tid).status == "processing"  # neither run has ended
        procs.kill9("S1")
        assert q.result(tid, timeout=60) == 3
    assert runs_of(tid) == [w1.pid, s1.pid, w1.pid]  # W1, S1 (killed), W1 again

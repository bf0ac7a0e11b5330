"""Several hosts, for real: Linux network namespaces on one bridge (worker_farm/hosts.py).

One services host (broker, Redis, monitor), three worker hosts each running a farm of two (two of
them with clocks 90 s ahead and behind, libfaketime), a client host that submits. The network's faults during a mixed workload: a worker host cut off
for 30 s, a host behind 200 ms ±50 ms of latency and 5% packet loss (Toxiproxy and iptables'
random drop), a host that reaches Kafka but not Redis, and one that reaches Redis but not Kafka.
Nothing may be lost, no task may run again after its outcome was stored, and every worker the
farms started is still the same process, alive, at the end.

Embedded broker only: what is tested is the network between hosts; the broker lanes test the
broker. Needs root (namespaces); CI runs as root.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import ROOT, wait_for
from ledger_tasks import read_ledger

from worker_farm.hosts import Lab
from worker_farm.multihost import BROKER_PORT, REDIS_PORT, MultiHost
from yadtq.client.client import YADTQ

pytestmark = pytest.mark.slow

WORKER_HOSTS = ("w1", "w2", "w3")
FAST = {"heartbeat_interval": 1.0, "dead_after": 4.0, "lease": 4.0, "retry_backoff": 0.2,
        "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 20000,
        "connect_timeout": 3.0, "series_interval": 0.5}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[MultiHost]:
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root (CI runs as root)")
    with Lab(["svc", *WORKER_HOSTS, "client"]) as lab:
        mh = MultiHost(lab, tmp_path, WORKER_HOSTS, task_modules=["ledger_tasks"],
                       pythonpath=[str(ROOT / "tests")], overrides=dict(FAST))
        try:
            yield mh
        finally:
            for label in mh.procs:
                print(f"--- {label}.out (tail)\n{mh.output(label)[-1500:]}")


def _submit(mh: MultiHost, specs: list[tuple[str, list[Any]]]) -> list[str]:
    return mh.submit("client", specs)


def _worker_pids(q: YADTQ) -> dict[str, int]:
    return {name: int(w.get("pid", 0)) for name, w in q.live.workers().items() if w.get("status") == "ALIVE"}


def _group_settled(q: YADTQ, partitions: int) -> bool:
    """Every ALIVE worker owns partitions, and together they own each one once: the group's rebalance is over.
    A worker heartbeats (ALIVE) before it joins the group; until every farm's workers have joined, tasks
    published meanwhile wait for the rebalance on the hosts that join last, and run one host after another."""
    alive = [w for w in q.live.workers().values() if w.get("status") == "ALIVE"]
    owned = sorted(p for w in alive for p in w.get("partitions", []))
    return (len(alive) == 2 * len(WORKER_HOSTS) and all(w.get("partitions") for w in alive)
            and owned == list(range(partitions)))


def _all_done(q: YADTQ, ids: list[str]) -> bool:
    return all(q.status(i).status == "success" for i in ids)


def test_tasks_of_three_types_spread_over_every_host_and_run_in_parallel(system: MultiHost) -> None:
    system.clocks.update(w1="+90s", w3="-90s")  # two hosts whose clocks are off, as without NTP
    system.start()
    q = YADTQ(system.settings)
    try:
        assert abs(system.clock("w1") - time.time() - 90) < 10, "w1's clock is not 90 s ahead"
        assert abs(system.clock("w3") - time.time() + 90) < 10, "w3's clock is not 90 s behind"
        wait_for(lambda: _group_settled(q, system.settings.partitions), 60, 0.2,
                 "every worker ALIVE with its share of the partitions")
        specs: list[tuple[str, list[Any]]] = [(name, [i, 2]) for i in range(30) for name in ("add", "multiply")]
        specs += [("sleep", [0.5]) for _ in range(24)]
        ids = _submit(system, specs)
        wait_for(lambda: _all_done(q, ids), 90, 0.5, "every task done")
        records = [q.status(i) for i in ids]
        expected = [{"add": lambda a, b: a + b, "multiply": lambda a, b: a * b,
                     "sleep": lambda s: s}[name](*args) for name, args in specs]
        assert [r.result for r in records] == expected
        hosts = {str(r.worker).split("-")[0] for r in records}
        assert hosts == set(WORKER_HOSTS), f"tasks ran on {hosts}"
        # In parallel: at the start of some sleep run, sleeps were running on at least two hosts.
        sleeps = [(r.started or 0.0, r.finished or 0.0, str(r.worker).split("-")[0]) for r in records
                  if r.task == "sleep"]
        most = max(len({h for s, e, h in sleeps if s <= t0 < e}) for t0, _, _ in sleeps)
        assert most >= 2, f"sleep runs never overlapped across hosts: {sorted(sleeps)}"
    finally:
        q.close()


@pytest.mark.timeout(900)  # on a fresh machine Toxiproxy is built first (go install, ~2 min)
def test_network_faults_during_a_mixed_workload_lose_nothing_and_run_nothing_twice(system: MultiHost) -> None:
    lab = system.lab
    svc = "svc"
    # w2 sits behind a bad link from the start (new connections go through the proxy).
    lab.degrade("w2", via=svc, ports=[BROKER_PORT, REDIS_PORT], latency_ms=200, jitter_ms=50, loss=0.05)
    system.start()
    q = YADTQ(system.settings)
    try:
        wait_for(lambda: len(_worker_pids(q)) == 2 * len(WORKER_HOSTS), 90, 0.5, "every worker ALIVE")
        pids = _worker_pids(q)
        ids: list[str] = []
        n = 0

        def batch(size: int = 30) -> None:
            nonlocal n
            specs: list[tuple[str, list[Any]]] = [("ledger_add", [n + i, 1, 0.05 * (i % 4)]) for i in range(size)]
            n += size
            ids.extend(_submit(system, specs))

        batch(60)
        lab.cut("w1")                      # a host cut off for 30 s
        lab.block("w3", REDIS_PORT)        # a host that reaches Kafka but not Redis
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < 15:
            batch()
            time.sleep(1.5)
        lab.unblock("w3")
        lab.block("w3", BROKER_PORT)       # now one that reaches Redis but not Kafka
        while time.monotonic() - cut_at < 30:
            batch()
            time.sleep(1.5)
        lab.mend("w1")
        lab.unblock("w3")
        assert lab.degraded_packets("w2") > 0, "w2's connections did not go through the proxy"
        # The host behind the bad link took part: both its workers ran tasks while it was degraded
        # (its group joins outlive its short polls: yadtq/broker/group_join.py).
        ran = _ledger_pids(system)
        w2_pids = {pid for name, pid in pids.items() if name.startswith("w2-")}
        assert w2_pids and w2_pids <= ran, f"w2's workers {w2_pids} ran no task while degraded"
        lab.restore("w2", via=svc)
        batch(60)
        wait_for(lambda: _all_done(q, ids), 180, 1.0, f"all {len(ids)} tasks done")

        r = redis.Redis.from_url(system.settings.redis_url, decode_responses=True)
        ledger = read_ledger(r, system.settings.prefix)
        r.close()
        stored = _stored_final_outcomes(Path(system.settings.log_dir))
        twice = [tid for tid, runs in ledger.items()
                 if any((tid, pid, attempt) in stored for pid, attempt in runs[:-1])]
        assert not twice, f"ran again after its outcome was stored: {twice[:5]}"
        assert set(ids) <= set(ledger), "a task finished without running"
        # The faults did bite: the cut host's workers and the host cut from Kafka were declared
        # DEAD, and the host cut from Redis lost it.
        declared = {f["worker"] for f in q.live.failures()}
        assert {"w1-W1", "w1-W2", "w3-W1", "w3-W2"} <= declared, declared
        lost_redis = [e for e in _events(Path(system.settings.log_dir), "w3-")
                      if e.get("event") == "connection_lost" and e.get("service") == "redis"]
        assert lost_redis, "w3 never lost Redis"
        wait_for(lambda: _worker_pids(q) == pids, 60, 0.5, "every worker ALIVE again, the same processes")
        assert system.alive(), "a process of the system ended"
    finally:
        q.close()


def _ledger_pids(mh: MultiHost) -> set[int]:
    """The processes that ran some task so far."""
    r = redis.Redis.from_url(mh.settings.redis_url, decode_responses=True)
    try:
        return {pid for runs in read_ledger(r, mh.settings.prefix).values() for pid, _ in runs}
    finally:
        r.close()


def _events(log_dir: Path, worker_prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in log_dir.glob(f"worker-{worker_prefix}*.events.jsonl"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _stored_final_outcomes(log_dir: Path) -> set[tuple[str, int, int]]:
    """(task id, pid, attempt) of every run whose final outcome a worker stored (its event log)."""
    out: set[tuple[str, int, int]] = set()
    for path in log_dir.glob("worker-*.events.jsonl"):
        for line in path.read_text(errors="replace").splitlines():
            if '"task_succeeded"' in line or '"task_failed"' in line:
                try:
                    e = json.loads(line)
                    out.add((str(e["task_id"]), int(e["pid"]), int(e["attempt"])))
                except (ValueError, KeyError, TypeError):
                    continue
    return out

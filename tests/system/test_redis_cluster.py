"""Redis Cluster: `yadtq services --redis-cluster 3` starts a 3-primary cluster a client reaches
through the URL it prints; a worker crash on the cluster costs one rerun, as on one server.
The URL's parsing and the shard function: tests/unit/test_redis_cluster_keys.py; the engine on
the cluster: tests/engine/test_redis_cluster_*.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Procs, wait_for
from ledger_tasks import read_ledger

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import answers, free_cluster_port, free_port
from yadtq.store.cluster import parse_cluster_url, shard_of, shard_prefix
from yadtq.store.connection import connect_redis
from yadtq.worker.crash import CRASH_EXIT_CODE


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # see test_services._interruptible


def test_services_starts_a_three_primary_cluster_a_client_reaches(tmp_path: Path) -> None:
    kport, ports = free_port(), [free_cluster_port() for _ in range(3)]
    nodes = ",".join(f"127.0.0.1:{p}" for p in ports)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")},
           "PYTHONPATH": str(ROOT), "YADTQ_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}",
           "YADTQ_REDIS_URL": f"redis+cluster://{nodes}/0", "YADTQ_DATA_DIR": str(tmp_path / "data"),
           "YADTQ_LOG_DIR": str(tmp_path / "logs")}
    proc = subprocess.Popen([sys.executable, "-m", "yadtq", "services", "--redis-cluster", "3"], env=env,
                            cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_interruptible)
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "services up" in line or "error" in line.lower():
            break
    out = "".join(seen)
    assert "services up" in out, out
    url = next(line.split("=", 1)[1].strip() for line in seen if line.startswith("YADTQ_REDIS_URL="))
    assert url == f"redis+cluster://{nodes}/0"
    try:
        client = connect_redis(Settings(redis_url=url))
        # Every node serves a third of the slots; a key of each shard lands somewhere and reads back.
        shards = parse_cluster_url(url).shards
        for n in range(shards):
            client.set(f"{shard_prefix('t:', n)}probe", str(n))
        assert [client.get(f"{shard_prefix('t:', n)}probe") for n in range(shards)] == [str(n) for n in range(shards)]
        served = {addr.rsplit(":", 1)[1].split("@")[0] for addr, node in client.cluster_nodes().items()
                  if "master" in node["flags"] and node["slots"]}
        assert served == {str(p) for p in ports}, client.cluster_nodes()
        # A Lua step over several keys of one shard runs on one node (the hash tag keeps them on one slot).
        script = client.register_script("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])")
        assert script(keys=[f"{shard_prefix('t:', 3)}a", f"{shard_prefix('t:', 3)}b"], args=["x"]) == 1
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + rest
    assert not any(answers("127.0.0.1", p) for p in ports)


@pytest.mark.brokers("embedded")  # the store is what this test is about; the broker lanes run the rest
def test_a_crash_mid_task_on_the_cluster_reruns_it_exactly_once_more(settings: Settings, procs: Procs,
                                                                    redis_cluster_url: str) -> None:
    """test_guarantees' crash test with Redis a 3-primary cluster, and a monitor beside the workers."""
    s = settings.replace(redis_url=redis_cluster_url, partitions=2)
    procs.settings = s
    monitor = procs.monitor()
    crasher = procs.worker("W1", "--tasks", "ledger_tasks", "--crash", "after:3@during", "--concurrency", "1",
                           settings=s)
    procs.wait_assigned(["W1"])
    r = connect_redis(s)
    with YADTQ(s) as q:
        ids = q.submit_many([("ledger_add", [i, 1, 0.0]) for i in range(30)])
        assert len({shard_of(t, parse_cluster_url(s.redis_url).shards) for t in ids}) > 4
        assert crasher.wait(timeout=60) == CRASH_EXIT_CODE
        procs.worker("W2", "--tasks", "ledger_tasks", settings=s)
        wait_for(lambda: q.backend.counts()["success"] == 30, 90, 0.2, "all 30 to succeed")
        ledger = read_ledger(r, s.prefix)
        twice = {tid: runs for tid, runs in ledger.items() if len(runs) > 1}
        assert len(twice) == 1, ledger
        (tid, runs), = twice.items()
        assert runs[0][0] == crasher.pid and runs[1][0] != crasher.pid
        rec = q.status(tid)
        assert (rec.attempts, rec.worker, rec.status) == (2, "W2", "success")
        assert all(len(ledger[t]) == 1 for t in ids if t != tid)
        assert q.backend.counts() == {"scheduled": 0, "queued": 0, "processing": 0, "success": 30, "failed": 0,
                                      "cancelled": 0, "expired": 0}
        assert [q.result(t) for t in ids] == [i + 1 for i in range(30)]
    assert monitor.poll() is None, procs.output("monitor")  # the monitor runs on the cluster too



@pytest.mark.serial
@pytest.mark.brokers("embedded")  # the store is what this test is about
@pytest.mark.timeout(240)
def test_chaos_on_the_cluster_kill9_of_workers_and_of_a_primary_loses_nothing_runs_nothing_twice(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """test_chaos's harness, shorter, with Redis a 3-primary cluster of its own: 400 tasks over the 16
    shards, a fault every ~2 s, a worker's kill -9 (respawned) or a primary's kill -9 and restart (its
    slots refuse connections, then answer CLUSTERDOWN for their first seconds back), a monitor beside
    them. Judged as on one server: nothing lost, nothing run twice but what a kill cut off; and beside
    them 40 tasks rate-limited to 10/s by their decorator, the limit held across the shards (LimitsMix)."""
    from worker_farm.chaos import run_chaos, write_report
    from worker_farm.chaos_services import ServiceControl
    from worker_farm.mixes.limits import LimitsMix
    from yadtq.ops.redis_cluster import RedisCluster

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    cluster = RedisCluster("127.0.0.1", (free_cluster_port(), free_cluster_port(), free_cluster_port()),
                           tmp_path / "cluster" / "data", tmp_path / "cluster" / "logs")
    primaries = iter(cluster.ports * 10)

    def no_broker_faults() -> None:
        raise AssertionError("this run injects no broker fault")

    try:
        cluster.start()
        s = settings.replace(redis_url=cluster.url, partitions=6, lease=3.0, heartbeat_interval_ms=500,
                             concurrency=4)
        lines: list[str] = []
        faults = ServiceControl(no_broker_faults, lambda: cluster.restart_node(next(primaries), down_for=1.0))
        report = run_chaos(s, tasks=400, workers=3, standby=1, kill_every=2.0, max_minutes=0.25, drain_minutes=1,
                           seed=5, say=lines.append, monitor=True, faults=("kill", "kill", "redis"),
                           services=faults, pauses=[0.05] * 6 + [0.2, 0.5, 0.5, 1.0], mixes=[LimitsMix()])
        notes = write_report(report, tmp_path / "chaos", s)  # its export reads the cluster
    finally:
        cluster.stop()
    figures = {**report.summary(), "counts": report.counts, "notes": notes}
    print(figures)
    assert report.faults.get("kill", 0) >= 3 and report.faults.get("redis", 0) >= 1, (figures, lines[-20:])
    assert report.lost == 0, (figures, lines[-20:])
    assert report.run_twice_after_completion == 0, (figures, report.unexplained[:10])
    assert report.reruns_after_midrun_kill <= report.kills * s.concurrency, figures
    assert report.counts_add_up and report.counts["success"] == 400, figures
    assert len({tid for tid, _, _ in report.ledger}) == 400  # every task ran, and left its trace
    assert report.alive_at_end, lines[-20:]  # the monitor too
    assert not report.mix_problems, report.mix_problems  # the rate held in every second, every task ended


@pytest.mark.brokers("embedded")  # the readers are what this test is about
def test_the_cli_the_api_and_the_dashboard_read_every_shard(settings: Settings, procs: Procs, redis_cluster_url: str,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the cluster, a worker runs tasks spread over the shards (one fails to its dead letter); then the
    CLI's readers, the HTTP API's read endpoints and every dashboard page (Streamlit's AppTest) see them all."""
    import json

    import streamlit as st
    from conftest import run_cli, serve_api
    from streamlit.testing.v1 import AppTest

    s = settings.replace(redis_url=redis_cluster_url, prefix=f"{settings.prefix}rd:")
    procs.settings = s
    procs.monitor()
    procs.worker("W1", settings=s)
    with YADTQ(s) as q:
        ok = q.submit_many([("add", [i, 1]) for i in range(20)])
        bad = q.submit("fail", ["disk full"], tries=1)
        q.add_schedule("nightly", "add", every=3600, args=[1, 2])
        for tid in [*ok, bad]:
            q.wait(tid, 60)
        assert len({shard_of(t, parse_cluster_url(s.redis_url).shards) for t in ok}) > 4
        wait_for(lambda: "W1" in q.live.workers(), 30, 0.2, "the monitor to register W1")

        status = run_cli(s, "status", bad, "--json")
        assert json.loads(status.stdout)["status"] == "failed", status.stderr
        tasks = json.loads(run_cli(s, "tasks", "--json", "--limit", "50").stdout)
        assert (tasks["counts"]["success"], tasks["counts"]["failed"]) == (20, 1)
        assert {r["task-id"] for r in tasks["tasks"]["success"]} == set(ok)
        assert [d["task_id"] for d in json.loads(run_cli(s, "dlq", "--json").stdout)] == [bad]
        assert "W1" in json.loads(run_cli(s, "workers", "--json").stdout)["workers"]
        queues = json.loads(run_cli(s, "queues", "--json").stdout)
        assert [(r["queue"], r["dead_letters"]) for r in queues] == [("default", 1)]
        export = run_cli(s, "export", "--out", str(tmp_path / "export"))
        assert "tasks 21" in export.stdout, export.stdout + export.stderr

        with serve_api(s, q) as api:
            assert {t["task_id"] for t in api.get("/tasks", params={"limit": 50}).json()["tasks"]} == {*ok, bad}
            assert [t["task_id"] for t in api.get("/tasks", params={"error": "DISK"}).json()["tasks"]] == [bad]
            assert api.get("/counts").json()["success"] == 20
            assert [d["task_id"] for d in api.get("/dead-letters").json()] == [bad]
            assert [w["name"] for w in api.get("/workers").json()] == ["W1"]
            assert [x["name"] for x in api.get("/schedules").json()] == ["nightly"]
            assert api.get("/stats").json()["finished_in_window"]["success"] == 20

        for k, v in s.env().items():
            monkeypatch.setenv(k, v)
        st.cache_resource.clear()  # the cached client belongs to another test's settings
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=30).run()
        assert not at.exception, at.exception
        assert {m.label: m.value for m in at.metric}["Success"] == "20"
        for page in ("tasks", "workers", "failures", "queues", "schedules", "workflows"):
            at.switch_page(f"views/{page}.py").run()
            assert not at.exception, (page, at.exception)

"""Issue 19 item 4: Redis that survives losing its primary (a primary, a replica, three Sentinels).

The failover test starts the five Redis processes on free ports (yadtq.ops.redis_ha),
workers and a monitor that use the `redis+sentinel://` URL, and kills the primary with
kill -9 mid-run; the chaos test kills workers and the primary in turn, judged by the
chaos harness's ledger. The URL's parsing is tested in tests/unit/test_sentinel_url.py.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import ROOT, Procs, wait_for
from ledger_tasks import read_ledger

from worker_farm.chaos import _stored_outcomes, run_chaos
from worker_farm.chaos_services import OwnedServices
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import answers, free_port
from yadtq.ops.redis_ha import SENTINEL_PORT_OFFSET, RedisHA
from yadtq.store.connection import REDIS_UNAVAILABLE, RedisClient, connect_redis
from yadtq.store.replication import ReplicaAck
from yadtq.store.sentinel import parse_sentinel_url, sentinels_ready
from yadtq.task.status import Status
from yadtq.worker.outages import warn_if_lease_shorter_than_a_failover

PER_KILL = 200  # tasks submitted before each kill
DURING = 20  # tasks submitted right after each kill
KILLS = 2  # the primary, then (after the killed one is back as a replica) the promoted one


@pytest.fixture
def redis_ha(tmp_path: Path) -> Iterator[RedisHA]:
    ha = RedisHA("127.0.0.1", free_port(), free_port(), (free_port(), free_port(), free_port()),
                 tmp_path / "ha-data", tmp_path / "ha-logs")
    ha.data_dir.mkdir()
    ha.log_dir.mkdir()
    try:
        ha.start()
        yield ha
    finally:
        ha.stop()


def test_a_waited_step_is_on_the_replica_when_it_returns_and_survives_noscript(redis_ha: RedisHA) -> None:
    s = Settings(redis_url=redis_ha.url)
    r = connect_redis(s)
    ack = ReplicaAck.for_settings(s)
    assert ack is not None
    script = r.register_script("return redis.call('INCR', KEYS[1])")
    replica = connect_redis(Settings(redis_url=f"redis://127.0.0.1:{redis_ha.replica_port}/0"))
    try:
        assert ack.call(r, script, ["n"], []) == 1
        assert replica.get("n") == "1"  # WAIT returned: the replica has it
        r.script_flush()  # as on a freshly promoted primary
        assert ack.call(r, script, ["n"], []) == 2
        assert replica.get("n") == "2" and ack.unreplicated == 0
    finally:
        r.close()
        replica.close()


def test_a_worker_warns_when_its_lease_is_shorter_than_a_failover(redis_ha: RedisHA) -> None:
    # The local set's Sentinels wait 2 s: a failover takes ~3 s, and a worker is back within 1 s more.
    assert warn_if_lease_shorter_than_a_failover(Settings(redis_url=redis_ha.url, lease=3.0))
    assert not warn_if_lease_shorter_than_a_failover(Settings(redis_url=redis_ha.url, lease=10.0))
    assert not warn_if_lease_shorter_than_a_failover(Settings(redis_url="redis://127.0.0.1:1/0", lease=1.0))


def test_a_step_that_meets_a_replica_reads_as_an_outage(redis_ha: RedisHA) -> None:
    """In a failover's middle a connection can reach a server that is (still) a replica: a step
    that writes nothing there gets WAIT's error, which must read as an outage (the worker waits
    and reconnects), not as a failed step."""
    replica = connect_redis(Settings(redis_url=f"redis://127.0.0.1:{redis_ha.replica_port}/0"))
    ack = ReplicaAck(1, 100)
    ack._replicas_seen, ack._checked_at = 1, time.monotonic()  # as counted on the primary a moment ago
    try:
        with pytest.raises(REDIS_UNAVAILABLE):
            ack.call(replica, replica.register_script("return 1"), ["n"], [])
    finally:
        replica.close()


def test_a_replica_still_receiving_its_first_copy_costs_a_step_no_wait(redis_ha: RedisHA) -> None:
    """A replica that (re)joins counts as connected at once but acknowledges nothing until its first
    copy is in: a step must not wait for it (each would cost the whole ack timeout)."""
    s = Settings(redis_url=redis_ha.url)
    r = connect_redis(s)
    ack = ReplicaAck.for_settings(s)
    assert ack is not None
    script = r.register_script("return redis.call('INCR', KEYS[1])")
    try:
        r.config_set("repl-diskless-sync-delay", "5")  # Redis's default: its first copy comes 5 s late
        os.kill(redis_ha.procs["redis-replica"].pid, signal.SIGKILL)
        redis_ha.procs["redis-replica"].wait()
        wait_for(lambda: int(r.info("replication")["connected_slaves"]) == 0, 30, 0.05, "the replica gone")
        redis_ha.restart("redis-replica", wait=False)
        wait_for(lambda: int(r.info("replication")["connected_slaves"]) == 1, 30, 0.05, "the replica connected")
        assert r.info("replication")["slave0"]["state"] != "online"
        started = time.monotonic()
        for _ in range(3):
            ack.call(r, script, ["n"], [])
        assert time.monotonic() - started < 1.0, "a step waited for a replica that acknowledges nothing yet"
        redis_ha.wait_ready()
        replica = connect_redis(Settings(redis_url=f"redis://127.0.0.1:{redis_ha.replica_port}/0"))
        ack.call(r, script, ["n"], [])  # once in sync, waited for again
        assert replica.get("n") == "4"
        replica.close()
    finally:
        r.close()


def _ledger_ends(r: RedisClient, prefix: str) -> int:
    try:
        return int(r.llen(prefix + "ledger_end"))
    except Exception:  # the primary is being replaced
        return -1


@pytest.mark.brokers("embedded")  # the broker does not matter here: one lane is enough
def test_kill9_of_the_primary_twice_under_load_loses_nothing_and_runs_nothing_twice(
        settings: Settings, redis_ha: RedisHA, tmp_path: Path) -> None:
    s = settings.replace(redis_url=redis_ha.url, partitions=4)
    procs = Procs(s, tmp_path)
    try:
        workers = [procs.worker(f"W{i}", "--tasks", "ledger_tasks", "--concurrency", "4") for i in (1, 2)]
        monitor = procs.monitor()
        procs.wait_assigned(["W1", "W2"])
        r = connect_redis(s)
        with YADTQ(s) as q:
            ids: list[str] = []
            resumed: list[float] = []
            submitted: list[float] = []
            killed = ""
            for _ in range(KILLS):
                if killed:  # the killed server back, as a replica: this kill has one to promote
                    redis_ha.restart(killed)
                ends = _ledger_ends(r, s.prefix)
                ids += q.submit_many([("ledger_add", [i, 1, 0.02]) for i in range(PER_KILL)])
                wait_for(lambda e=ends: _ledger_ends(r, s.prefix) >= e + PER_KILL // 3, 60, 0.02,
                         "a third of the tasks to run")
                before = _ledger_ends(r, s.prefix)
                killed, killed_at = redis_ha.primary(), time.monotonic()
                os.kill(redis_ha.procs[killed].pid, signal.SIGKILL)
                redis_ha.procs[killed].wait()
                # A client submitting in the failover window waits it out (no BackendUnavailable).
                ids += q.submit_many([("ledger_add", [i, 2, 0.02]) for i in range(DURING)])
                submitted.append(round(time.monotonic() - killed_at, 1))
                wait_for(lambda b=before: _ledger_ends(r, s.prefix) > b, 60, 0.05, "a completion after the kill")
                resumed.append(round(time.monotonic() - killed_at, 1))
            wait_for(lambda: q.backend.counts().get(Status.SUCCESS, 0) == len(ids), 90, 0.2, "every task to succeed")
            assert {q.status(t).status for t in ids} == {Status.SUCCESS}
            ledger = read_ledger(r, s.prefix)
        stored = _stored_outcomes(Path(s.log_dir))
        # A run after a run whose outcome was stored (and so acknowledged) would be a second run.
        again = {tid: runs for tid, runs in ledger.items()
                 if any((tid, pid, attempt) in stored for pid, attempt in runs[:-1])}
        assert not again, again
        assert set(ledger) == set(ids)
        assert all(w.poll() is None for w in workers) and monitor.poll() is None
        print(f"\n{KILLS} kill -9 of the primary: next completion after {resumed} s, a submit right after "
              f"each kill returned after {submitted} s; "
              f"{sum(len(v) for v in ledger.values())} runs for {len(ids)} tasks")
        r.close()
    finally:
        procs.stop_all()


def _one_replica_in_sync(sentinel: redis.Redis) -> bool:
    replicas = sentinel.sentinel_slaves("mymaster")
    return len(replicas) == 1 and "s_down" not in str(replicas[0].get("flags")) and \
        replicas[0].get("master-link-status") == "ok"


def _ha_ports() -> int:
    """A first Sentinel port whose two neighbours, and whose data servers' ports (minus 20000), are free.

    Below the kernel's ephemeral range (32768 and up): a port there can be taken by any outgoing
    connection of a test running beside this one between the check and the Sentinel's start."""
    for _ in range(200):
        first = random.randrange(SENTINEL_PORT_OFFSET + 1025, 32760)
        ports = [first, first + 1, first + 2, first - SENTINEL_PORT_OFFSET, first - SENTINEL_PORT_OFFSET + 1]
        if all(_bindable(p) for p in ports):
            return first
    raise AssertionError("no free ports for a Redis HA set")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_services_redis_ha_prints_the_url_every_process_uses(tmp_path: Path) -> None:
    first = _ha_ports()
    url = f"redis+sentinel://127.0.0.1:{first},127.0.0.1:{first + 1},127.0.0.1:{first + 2}/mymaster/0"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}, "PYTHONPATH": str(ROOT),
           "YADTQ_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "YADTQ_REDIS_URL": url}
    proc = subprocess.Popen([sys.executable, "-m", "yadtq", "services", "--redis-ha"], env=env, cwd=tmp_path,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        seen = []
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "services up" in line:
                break
        out = "".join(seen)
        assert f"YADTQ_REDIS_URL={url}\n" in out, out
        r = connect_redis(Settings(redis_url=url))
        r.set("k", "v")
        assert r.connection_pool.get_master_address()[1] == first - SENTINEL_PORT_OFFSET  # type: ignore[attr-defined]
        # A data server killed outright is started again: the set has its spare back.
        found = re.search(r"started primary \S+ \(pid (\d+)\)", out)
        assert found, out
        os.kill(int(found.group(1)), signal.SIGKILL)
        for line in proc.stdout:
            seen.append(line)
            if "redis-primary" in line and "starting it again" in line:
                break
        sentinel = redis.Redis(port=first, decode_responses=True)
        wait_for(lambda: _one_replica_in_sync(sentinel), 60, 0.2, "a replica in sync again")
        assert r.get("k") == "v"
        sentinel.close()
        # So is a Sentinel, from its own configuration file: it knows the set again, and the quorum is whole.
        pids = re.search(r"Sentinels at \S+ \(pid (\d+), (\d+), (\d+)\)", out)
        assert pids, out
        os.kill(int(pids.group(3)), signal.SIGKILL)
        for line in proc.stdout:
            seen.append(line)
            if f"sentinel-{first + 2}" in line and "starting it again" in line:
                break
        assert proc.poll() is None, "".join(seen[-5:])
        # The Sentinel died while the primary's revive waited for the quorum: it is revived within that
        # wait, which then ends (before, the wait ran out after 60 s and the primary stayed unconfirmed).
        ended = ("redis-primary is back", "not in sync yet", "did not come back")
        while not any(e in line for line in seen for e in ended):
            seen.append(proc.stdout.readline())
            assert seen[-1], "services ended: " + "".join(seen[-5:])
        assert any("redis-primary is back" in line for line in seen), "".join(seen[-5:])
        wait_for(lambda: sentinels_ready(parse_sentinel_url(url))[0], 60, 0.2, "the Sentinel to know the set again")
        r.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not any(answers("127.0.0.1", p) for p in (first, first + 1, first + 2,
                                                         first - SENTINEL_PORT_OFFSET))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.serial
@pytest.mark.timeout(420)
@pytest.mark.brokers("embedded")  # the broker does not matter here: one lane is enough
def test_chaos_with_primary_kills_behind_sentinel(settings: Settings, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of workers and of the Redis primary in turn, for ~30 s, with a monitor; each killed
    primary rejoins as a replica a few seconds after its failover. Nothing lost, nothing run twice
    unless its run was cut off by a worker's kill, every worker and the monitor alive at the end."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    owned = OwnedServices(tmp_path / "owned", redis_ha=True)
    try:
        # The lease outlasts a failover (~3.2 s here: the Sentinels wait 2 s, then promote): with the 3 s of
        # the other chaos tests, a task started just before a primary kill lost its lease before the new
        # primary served, and the monitor gave it to another worker (it ran twice).
        s = settings.replace(kafka_bootstrap=owned.kafka_bootstrap, redis_url=owned.redis_url, partitions=4,
                             concurrency=4, lease=6.0, heartbeat_interval_ms=500, requeue_stale_after=5.0)
        lines: list[str] = []
        report = run_chaos(s, tasks=600, workers=3, standby=1, kill_every=2.0, max_minutes=0.5, drain_minutes=2,
                           seed=19, say=lines.append, faults=("kill", "primary"), services=owned.control(),
                           monitor=True, pauses=[0.002] * 17 + [0.2, 0.2, 0.5])
        failovers = [(round(f.ended - f.ts, 1), f.recover_s) for f in report.fault_log if f.kind == "primary"]
        figures = {**report.summary(), "counts": report.counts, "failovers (named, next completion)": failovers}
        print(figures)
        assert report.faults.get("primary", 0) >= 2 and report.kills >= 2, figures
        assert report.lost == 0, (figures, lines[-20:])
        assert report.run_twice_after_completion == 0, (figures, report.unexplained[:10])
        assert report.counts_add_up and report.counts["success"] == 600, figures
        assert report.alive_at_end, (figures, lines[-20:])
    finally:
        owned.stop()

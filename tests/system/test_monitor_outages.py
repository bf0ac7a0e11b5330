"""The monitor through outages: a real monitor process, a private broker and Redis.

Heartbeats come from senders in the test (real Kafka producers writing real
heartbeat records), so each test controls exactly when a "worker" speaks, what
its clock says, and when it falls silent; the monitor's judgement is the
thing under test. Worker processes are covered by test_clock_skew.py and the
chaos run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from conftest import Procs, wait_for
from kafka import KafkaProducer
from kafka.errors import KafkaError
from ledger_tasks import read_ledger

from yadtq.broker.clients import close_producer
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import free_port
from yadtq.ops.services import start_broker, start_redis
from yadtq.task.messages import Heartbeat, key_partition

# The monitor is what is under test, with a private broker it may kill: the embedded one, whose restart
# loses its log (what the recovery here is for). On Apache Kafka a restart keeps the log: that case, with a
# monitor running, is in test_kafka_behaviour.py and in test_faults.py's all-faults chaos on both brokers.
pytestmark = pytest.mark.brokers("embedded")


@dataclass
class Private:
    """A broker and a Redis of this test only, so killing them disturbs no other test."""

    base: Path
    kport: int = field(default_factory=free_port)
    rport: int = field(default_factory=free_port)
    broker: subprocess.Popen[bytes] | None = None
    redis_proc: subprocess.Popen[bytes] | None = None

    def start_broker(self) -> None:
        self.broker = start_broker("127.0.0.1", self.kport, self.base / "logs")

    def kill_broker(self) -> None:
        assert self.broker is not None
        self.broker.kill()
        self.broker.wait(timeout=10)

    def start_redis(self) -> None:
        self.redis_proc = start_redis("127.0.0.1", self.rport, self.base / "data", self.base / "logs")

    def kill_redis(self) -> None:
        assert self.redis_proc is not None
        self.redis_proc.kill()  # SIGKILL: only the append-only file keeps the data
        self.redis_proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in (self.broker, self.redis_proc):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Private]:
    p = Private(tmp_path / "private")
    p.start_broker()
    p.start_redis()
    yield p
    p.stop()


@pytest.fixture
def ps(settings: Settings, private: Private, procs: Procs) -> Settings:
    s = settings.replace(kafka_bootstrap=f"127.0.0.1:{private.kport}", redis_url=f"redis://127.0.0.1:{private.rport}/0")
    procs.settings = s
    return s


class Sender:
    """Sends a worker's heartbeats every interval, with its clock `skew` seconds off."""

    def __init__(self, s: Settings, name: str, skew: float = 0.0) -> None:
        self.s, self.name, self.skew = s, name, skew
        self.state = "idle"
        self.sent = 0
        self._quiet = threading.Event()
        self._producer: KafkaProducer | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        hb = Heartbeat(self.name, "testhost", os.getpid(), f"{self.name}:1", self.state, None, 0, 0,
                       ts=time.time() + self.skew)
        try:
            if self._producer is None:
                self._producer = KafkaProducer(bootstrap_servers=self.s.kafka_bootstrap, linger_ms=0,
                                               max_block_ms=2000, request_timeout_ms=2000, delivery_timeout_ms=2000,
                                               reconnect_backoff_max_ms=1000)  # as YADTQ's clients
            self._producer.send(self.s.heartbeat_topic, hb.encode(), partition=0).get(timeout=2)
            self.sent += 1
        except KafkaError:
            self._drop()  # the broker is away: start afresh next time, as a worker would

    def _drop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer, self.s)  # a beat in flight to a broker that is gone fails in 2 s

    def _run(self) -> None:
        while not self._quiet.wait(self.s.heartbeat_interval):
            self._beat()

    def goodbye(self) -> None:
        self.state = "stopping"
        self._beat()
        self.silence()

    def silence(self) -> None:
        self._quiet.set()
        self._thread.join(timeout=10)
        self._drop()


def _status(q: YADTQ, name: str) -> str | None:
    try:
        return q.live.workers().get(name, {}).get("status")
    except redis.ConnectionError:
        return None


def _events(procs: Procs, name: str) -> list[str]:
    return [e["event"] for e in procs.events("monitor") if e.get("worker") in (None, name)]


def _wait_seconds(seconds: float, still: list[subprocess.Popen[str]]) -> None:
    """Lets `seconds` pass while checking the given processes stay up (a condition, not a bare sleep)."""
    until = time.monotonic() + seconds
    wait_for(lambda: any(p.poll() is not None for p in still) or time.monotonic() >= until, seconds + 30, 0.2)
    assert all(p.poll() is None for p in still), "a process exited during the outage"


@pytest.mark.timeout(180)
def test_liveness_is_judged_by_receive_time_and_a_goodbye_is_no_death(ps: Settings, procs: Procs) -> None:
    monitor = procs.monitor()
    senders = {"ahead": Sender(ps, "ahead", +90), "behind": Sender(ps, "behind", -90), "leaver": Sender(ps, "leaver")}
    with YADTQ(ps) as q:
        wait_for(lambda: all(_status(q, n) == "ALIVE" for n in senders), 30, 0.1, "all three ALIVE")
        senders["behind"].silence()  # like kill -9: no goodbye
        silenced = time.time()
        senders["leaver"].goodbye()
        wait_for(lambda: _status(q, "leaver") == "LEFT", 30, 0.1, "the leaver LEFT")
        wait_for(lambda: _status(q, "behind") == "DEAD", ps.dead_after + 20, 0.1, "the silent one DEAD")
        assert time.time() - silenced <= ps.dead_after + 2 * ps.heartbeat_interval + 5
        _wait_seconds(ps.dead_after + 2, [monitor])
        workers = q.live.workers()
        assert workers["ahead"]["status"] == "ALIVE" and workers["leaver"]["status"] == "LEFT"
        assert [f["worker"] for f in q.live.failures(10)] == ["behind"]
        events = procs.events("monitor")
        assert [e["worker"] for e in events if e["event"] == "worker_left"] == ["leaver"]
        assert [e["worker"] for e in events if e["event"] == "worker_died"] == ["behind"]
    senders["ahead"].silence()


@pytest.mark.timeout(240)
def test_broker_outage_and_restart_declare_no_one_dead(ps: Settings, private: Private, procs: Procs) -> None:
    monitor = procs.monitor()
    live, doomed = Sender(ps, "live"), Sender(ps, "doomed")
    with YADTQ(ps) as q:
        wait_for(lambda: _status(q, "live") == "ALIVE" and _status(q, "doomed") == "ALIVE", 30, 0.1, "both ALIVE")
        private.kill_broker()
        wait_for(lambda: "connection_lost" in _events(procs, ""), 30, 0.2, "the monitor to see the broker go")
        doomed.silence()  # dies while nobody can hear it
        _wait_seconds(ps.dead_after * 2, [monitor])
        assert q.live.failures(10) == [], "nobody may be declared dead while the broker is away"
        private.start_broker()  # empty: the embedded broker keeps nothing
        back = time.time()
        wait_for(lambda: "connection_restored" in _events(procs, ""), 30, 0.2, "the monitor to see it back")
        # The new heartbeat topic is read from its start, so the live worker shows within a few beats.
        wait_for(lambda: q.live.workers()["live"]["last_heartbeat"] > back, 30, 0.1, "a fresh beat of the live one")
        wait_for(lambda: _status(q, "doomed") == "DEAD", ps.dead_after + 30, 0.2, "the one that died meanwhile DEAD")
        _wait_seconds(ps.dead_after + 2, [monitor])
        assert _status(q, "live") == "ALIVE"
        assert [f["worker"] for f in q.live.failures(10)] == ["doomed"]
        names = [e["event"] for e in procs.events("monitor")]
        assert names.count("connection_lost") == 1 and names.count("connection_restored") == 1
        assert "broker_restarted" in names
    live.silence()
    assert monitor.poll() is None


@pytest.mark.timeout(240)
def test_redis_outage_keeps_heartbeats_and_declares_no_one_dead(ps: Settings, private: Private,
                                                                procs: Procs) -> None:
    monitor = procs.monitor()
    sender = Sender(ps, "steady")
    with YADTQ(ps) as q:
        wait_for(lambda: _status(q, "steady") == "ALIVE", 30, 0.1, "ALIVE")
    private.kill_redis()
    wait_for(lambda: "connection_lost" in _events(procs, ""), 30, 0.2, "the monitor to see Redis go")
    _wait_seconds(ps.dead_after * 2, [monitor])
    private.start_redis()
    with YADTQ(ps) as q:
        wait_for(lambda: "connection_restored" in _events(procs, ""), 30, 0.2, "the monitor to see Redis back")
        _wait_seconds(ps.dead_after + 2, [monitor])
        assert _status(q, "steady") == "ALIVE"
        assert q.live.failures(10) == []
        # The beats sent while Redis was down were kept and stored afterwards.
        assert len(q.live.heartbeats(10_000)) >= sender.sent - 2
    sender.silence()


@pytest.mark.timeout(240)
def test_broker_restart_republishes_each_lost_task_once(ps: Settings, private: Private, procs: Procs,
                                                        tmp_path: Path) -> None:
    s = ps.replace(requeue_stale_after=0.0)  # only the restart may republish here
    procs.settings = s
    with YADTQ(s) as q:
        # no worker yet; every other task has an ordering key, which its republished message must keep
        keys = {i: f"acct-{i % 3}" for i in range(0, 20, 2)}
        ids = q.submit_many([{"task": "ledger_add", "args": [i, 1], "key": keys[i]} if i in keys
                             else ("ledger_add", [i, 1]) for i in range(20)])
        procs.monitor()
        wait_for(lambda: any(e["event"] == "connected" for e in procs.events("monitor")), 30, 0.2, "the monitor")
        private.kill_broker()
        private.start_broker()  # empty: every message is gone, Redis still has the 20 records
        wait_for(lambda: _requeued(procs) >= 20, 60, 0.2, "the monitor to publish the lost tasks again")
        _wait_seconds(4 * s.heartbeat_interval, [procs.procs["monitor"]])
        assert _requeued(procs) == 20  # each once, not again at every epoch check
        procs.worker("W1", "--tasks", "ledger_tasks")
        wait_for(lambda: q.backend.counts()["success"] == 20, 90, 0.2, "all 20 to run")
        ledger = read_ledger(redis.Redis.from_url(s.redis_url, decode_responses=True), s.prefix)
        assert sorted(ledger) == sorted(ids) and all(len(runs) == 1 for runs in ledger.values())
        assert [e["reason"] for e in procs.events("monitor") if e["event"] == "tasks_requeued"] == ["broker_restart"]
        partitions = list(range(s.partitions))
        for i, key in keys.items():  # republished to its key's partition, so it kept its place in the key's order
            rec = q.status(ids[i])
            assert rec.as_dict()["key"] == key and rec.partition == key_partition(key, partitions)


def _requeued(procs: Procs) -> int:
    return sum(e["count"] for e in procs.events("monitor") if e["event"] == "tasks_requeued")


@pytest.mark.timeout(240)
def test_a_stuck_processing_task_is_requeued_by_the_monitor(ps: Settings, private: Private, procs: Procs) -> None:
    """`make run` stopped mid-task: the worker is gone, the embedded broker lost the message,
    Redis says `processing`. The monitor requeues it once its lease lapsed."""
    s = ps.replace(requeue_stale_after=2.0)
    procs.settings = s
    with YADTQ(s) as q:
        w = procs.worker("W1", "--tasks", "ledger_tasks")
        procs.wait_assigned(["W1"])
        tid = q.submit("ledger_add", [1, 2, 12])
        wait_for(lambda: q.status(tid).status == "processing", 30, 0.05, "the task to start")
        os.killpg(w.pid, signal.SIGKILL)
        w.wait(timeout=10)
        private.kill_broker()
        private.start_broker()
        # A later run: a new topic, a monitor, a worker that never sees the old message.
        procs.monitor()
        procs.worker("W2", "--tasks", "ledger_tasks")
        wait_for(lambda: q.status(tid).status == "success", 90, 0.2, "the stuck task to run again and finish")
        rec = q.status(tid)
        assert rec.worker == "W2" and rec.result == 3
        assert _requeued(procs) == 1


@pytest.mark.timeout(240)
def test_a_task_running_across_a_broker_restart_that_comes_back_queued_is_published_again(
        ps: Settings, private: Private, procs: Procs) -> None:
    """A keyed task claimed from the lost log asks for a retry after the restart's rescan window:
    it is `queued` again with no message left. The monitor keeps looking while such a task runs."""
    s = ps.replace(lease=2.0, heartbeat_interval_ms=500, dead_after=3.0,  # the suite's session timeout
                   requeue_stale_after=0.0)
    window = 2 * (s.lease + s.session_timeout_ms / 1000) + s.dead_after
    procs.settings = s
    with YADTQ(s) as q:
        procs.monitor()
        procs.worker("W1", "--tasks", "ledger_tasks")
        procs.wait_assigned(["W1"])
        tid = q.submit("ledger_slow_retry", [window + 4], key="account-7")
        wait_for(lambda: q.status(tid).status == "processing", 30, 0.05, "the task to start")
        private.kill_broker()
        private.start_broker()
        wait_for(lambda: q.status(tid).status == "success", window + 90, 0.2, "the retry to run after the window")
        ledger = read_ledger(redis.Redis.from_url(s.redis_url, decode_responses=True), s.prefix)
        assert [attempt for _, attempt in ledger[tid]] == [1, 2]


@pytest.mark.timeout(180)
def test_leases_of_running_tasks_never_lapse_while_the_broker_is_away(ps: Settings, private: Private,
                                                                      procs: Procs) -> None:
    """Lease renewal does not wait on Kafka: with the broker down and back (empty), a running task's
    lease stays ahead of Redis time all along, so no one else may claim it, and it runs once."""
    s = ps.replace(lease=2.0)
    procs.settings = s
    r = redis.Redis.from_url(s.redis_url, decode_responses=True)
    with YADTQ(s) as q:
        procs.worker("W1", "--tasks", "ledger_tasks")
        procs.wait_assigned(["W1"])
        tid = q.submit("ledger_add", [1, 2, 14])
        wait_for(lambda: q.status(tid).status == "processing", 30, 0.05, "the task to start")
        private.kill_broker()
        lapsed: list[float] = []

        def watch(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                sec, usec = r.time()
                lease = float(r.hget(q.backend.keys.task(tid), "lease") or 0)
                if lease < sec + usec / 1e6:
                    lapsed.append(sec + usec / 1e6 - lease)
                time.sleep(0.1)

        watch(5)
        private.start_broker()
        watch(4)
        assert not lapsed, f"the lease lapsed by up to {max(lapsed):.2f}s while the worker ran the task"
        wait_for(lambda: q.status(tid).status == "success", 60, 0.2, "the task to finish")
        assert [run for run in read_ledger(r, s.prefix)[tid]] == read_ledger(r, s.prefix)[tid][:1]


class Link:
    """A TCP relay to Redis for one process: `cut()` holds every byte both ways (a link gone silent, as
    when a host loses its route), `mend()` lets them through again."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.open.clear()

    def mend(self) -> None:
        self.open.set()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.server.accept()
            except OSError:
                return  # closed
            far = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.open.wait()
                dst.sendall(data)
        except OSError:
            pass  # either end closed
        finally:
            for sock in (src, dst):
                sock.close()

    def close(self) -> None:
        self.server.close()


@pytest.mark.timeout(180)
def test_a_live_worker_cut_off_from_redis_for_longer_than_the_lease_runs_its_task_once(
        ps: Settings, private: Private, procs: Procs) -> None:
    """W1 reaches Redis through a link that goes silent for longer than the lease plus the requeue grace
    while it runs a task: it cannot renew the lease, which lapses, but W1 is alive all along (its
    heartbeats go through the broker). The monitor must leave the task alone, and W1 stores its outcome
    when the link returns. Requeued, it would run a second time: a Redis failover whose Sentinels split
    their vote did that to a live worker's tasks in a chaos run."""
    s = ps.replace(lease=2.0, requeue_stale_after=1.0)
    procs.settings = s
    link = Link(private.rport)
    r = redis.Redis.from_url(s.redis_url, decode_responses=True)
    try:
        with YADTQ(s) as q:
            monitor = procs.monitor()
            w1 = procs.worker("W1", "--tasks", "ledger_tasks",
                              settings=s.replace(redis_url=f"redis://127.0.0.1:{link.port}/0"))
            procs.wait_assigned(["W1"])
            wait_for(lambda: _status(q, "W1") == "ALIVE", 30, 0.1, "W1 ALIVE")
            tid = q.submit("ledger_add", [1, 2, 0.5])
            wait_for(lambda: tid in read_ledger(r, s.prefix), 30, 0.05, "the task to start")
            link.cut()
            lapsed_for = s.lease + s.requeue_stale_after + 2 * max(1.0, s.lease / 2)  # and the monitor's rounds
            wait_for(lambda: float(r.hget(q.backend.keys.task(tid), "lease") or 0) + lapsed_for < _redis_now(r),
                     30, 0.1, "the lease to lapse for longer than the grace and two monitor rounds")
            assert q.status(tid).status == "processing", "requeued while its worker was alive"
            assert _status(q, "W1") == "ALIVE"
            link.mend()
            wait_for(lambda: q.status(tid).status == "success", 60, 0.2, "the task to finish")
            assert len(read_ledger(r, s.prefix)[tid]) == 1, "the task ran again while its worker was alive"
            assert not any(e["event"] == "tasks_requeued" for e in procs.events("monitor"))
            assert q.status(tid).result == 3
            assert monitor.poll() is None and w1.poll() is None
    finally:
        link.mend()
        link.close()
        r.close()


def _redis_now(r: redis.Redis) -> float:
    sec, usec = r.time()
    return float(sec) + usec / 1e6


@pytest.mark.timeout(60)
def test_an_unforeseen_error_in_a_round_is_logged_and_the_monitor_goes_on(ps: Settings) -> None:
    from yadtq.monitor.monitor import Monitor

    monitor = Monitor(ps)
    monitor.connect()
    real = monitor._read_heartbeats
    calls = {"n": 0}

    def flaky() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("something no handler foresaw")
        real()

    monitor._read_heartbeats = flaky  # type: ignore[method-assign]
    thread = threading.Thread(target=monitor.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: calls["n"] >= 5, 30, 0.1, "rounds after the error")
        assert thread.is_alive()
        monitor.events.flush()
        errors = [e for e in _read_events(ps, "monitor") if e["event"] == "monitor_error"]
        assert len(errors) == 1 and "something no handler foresaw" in errors[0]["error"]
    finally:
        monitor.stop()
        thread.join(timeout=15)


def _read_events(s: Settings, name: str) -> list[dict[str, object]]:
    import json
    path = Path(s.log_dir) / f"{name}.events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(180)
def test_a_worker_started_before_the_monitor_notes_a_new_broker_sees_no_lost_log(
        ps: Settings, private: Private, procs: Procs) -> None:
    """`make run` again: the embedded broker starts empty, Redis still notes the old broker's epoch.
    A worker that starts before the monitor notes the new one must not take the monitor catching up
    for its broker losing the log under it (a warning on every restart); a restart under it still is."""
    with YADTQ(ps) as q:
        lost = q.submit("ledger_add", [1, 2])  # notes the first broker's epoch; no worker yet
        old = q.redis.get(q.backend.keys.broker_epoch)
        private.kill_broker()
        private.start_broker()  # empty: the task's message is gone
        worker = procs.worker("W1", "--tasks", "ledger_tasks")
        procs.wait_assigned(["W1"])
        monitor = procs.monitor()
        wait_for(lambda: q.redis.get(q.backend.keys.broker_epoch) not in (None, old), 30, 0.1,
                 "the monitor to note the new broker's epoch")
        wait_for(lambda: q.status(lost).status == "success", 60, 0.1, "the lost task to be published again and run")
        _wait_seconds(3.0, [worker, monitor])  # the worker reads the noted epoch every 2 s
        assert not [e for e in procs.events("worker-W1") if e["event"] == "broker_log_restarted"]
        assert "lost its log" not in procs.output("W1") and "starts afresh" in procs.output("W1")
        private.kill_broker()
        private.start_broker()  # this time under the running worker: it must read its partitions again
        wait_for(lambda: any(e["event"] == "broker_log_restarted" for e in procs.events("worker-W1")), 60, 0.2,
                 "the worker to see the broker lose its log")
        again = q.submit("ledger_add", [3, 4])
        wait_for(lambda: q.status(again).status == "success", 60, 0.1, "a task of the new log to run")
        ledger = read_ledger(redis.Redis.from_url(ps.redis_url, decode_responses=True), ps.prefix)
        assert sorted(ledger) == sorted([lost, again]) and all(len(runs) == 1 for runs in ledger.values())

"""`yadtq services` and the monitor's history, on real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import redis
from conftest import ROOT, ServiceAddrs, wait_for

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import answers, free_port
from yadtq.ops.services import redis_binary, start_redis
from yadtq.store.worker_names import pid_alive


def _interruptible() -> None:
    """In the child: SIGINT as a terminal delivers it. A pytest-xdist worker ignores SIGINT, and an ignored
    signal stays ignored across exec, so without this the test's "Ctrl+C" would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _services(env: dict[str, str], cwd) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "yadtq", "services"], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_interruptible)


def _until(proc: subprocess.Popen[str], marker: str) -> str:
    """Reads the process's output up to the line holding `marker` (the test's timeout bounds it)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never printed: {''.join(seen)}")


def test_services_starts_what_is_missing_and_stops_it(tmp_path, services: ServiceAddrs) -> None:
    kport, rport = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")},
           "PYTHONPATH": str(ROOT), "YADTQ_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}",
           "YADTQ_REDIS_URL": f"redis://127.0.0.1:{rport}/0"}
    proc = _services(env, tmp_path)
    head = _until(proc, "services up")
    assert answers("127.0.0.1", kport) and answers("127.0.0.1", rport)
    r = redis.Redis(port=rport)
    r.set("kept", "yes")
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    out = head + rest
    assert proc.returncode == 0, out
    assert f"broker: started tansu at 127.0.0.1:{kport}" in out and f"redis: started at 127.0.0.1:{rport}" in out
    assert not answers("127.0.0.1", kport) and not answers("127.0.0.1", rport)
    assert list((tmp_path / "data").glob("appendonly-*"))  # the append-only file survives the stop

    # Restarted on the same data directory: the record is still there.
    proc = _services(env, tmp_path)
    _until(proc, "services up")
    assert redis.Redis(port=rport).get("kept") == b"yes"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert not answers("127.0.0.1", rport)

    # Where both already answer, it starts nothing.
    env.update(YADTQ_KAFKA_BOOTSTRAP=services.kafka, YADTQ_REDIS_URL=services.redis_url)
    proc = _services(env, tmp_path)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "using the one answering" in out and "nothing to start" in out


def test_monitor_keeps_time_series_and_a_capped_heartbeat_log(settings: Settings, procs, services) -> None:
    s = settings.replace(heartbeat_history=5)
    procs.settings = s
    procs.start("monitor", "monitor", settings=s)
    procs.worker("W1", settings=s)
    with YADTQ(s) as q:
        ids = q.submit_many([("add", [i, i]) for i in range(30)])
        wait_for(lambda: q.backend.counts()["success"] == 30, 60, 0.1, "the tasks")
        last = wait_for(lambda: next((x for x in reversed(q.live.series(50)) if x["success"] == 30), None),
                        30, 0.2, "a sample with every success")
        assert last["done_by"] == {"W1": 30} and last["queued"] == 0
        wait_for(lambda: len(q.live.heartbeats(100)) == 5, 30, 0.2, "five heartbeats")
        assert len(q.live.heartbeats(100)) == 5  # capped at heartbeat_history
        assert all(hb["worker"] == "W1" for hb in q.live.heartbeats(5))
        # The state is the one of the newest heartbeat (one a second): it may still be from the last run.
        w = wait_for(lambda: (x := q.live.workers()["W1"])["state"] == "idle" and x, 10, 0.2, "an idle heartbeat")
        assert w["status"] == "ALIVE" and len(ids) == 30


def _env(kport: int, rport: int, data: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")},
            "PYTHONPATH": str(ROOT), "YADTQ_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}",
            "YADTQ_REDIS_URL": f"redis://127.0.0.1:{rport}/0", "YADTQ_DATA_DIR": str(data),
            "YADTQ_LOG_DIR": str(data.parent / "logs")}


def test_wait_returns_only_once_redis_has_loaded_its_data(tmp_path: Path, services: ServiceAddrs) -> None:
    rport = free_port()
    proc = start_redis("127.0.0.1", rport, tmp_path / "data", tmp_path / "logs")
    try:
        r = redis.Redis(port=rport)
        pipe = r.pipeline(transaction=False)
        for i in range(30_000):
            pipe.set(f"k{i}", "x" * 10)
        pipe.execute()
        r.bgrewriteaof()  # an RDB preamble: the loading delay below applies per key
        wait_for(lambda: not r.info("persistence")["aof_rewrite_in_progress"], 30, 0.1, "the rewrite")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # `yadtq wait` is already probing a Redis that is not there yet (it says so), so its own start,
    # slow on a loaded machine, cannot outlast the loading.
    env = {**_env(0, rport, tmp_path / "data"), "YADTQ_KAFKA_BOOTSTRAP": services.kafka}
    waiting = subprocess.Popen([sys.executable, "-m", "yadtq", "wait", "--timeout", "60"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stderr is not None
    first = waiting.stderr.readline()
    assert f"Redis at 127.0.0.1:{rport}" in first and "loading" not in first, first
    # Loads slowly (100 us per key, ~3 s) and answers LOADING meanwhile, as a big file does.
    proc = start_redis("127.0.0.1", rport, tmp_path / "data", tmp_path / "logs",
                       extra_args=("--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024"))
    try:
        _, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, first + err
        assert "loading its data into memory" in err, first + err
        assert redis.Redis(port=rport).ping() and redis.Redis(port=rport).dbsize() == 30_000
    finally:
        waiting.kill()
        proc.terminate()
        proc.wait(timeout=30)


def test_services_adopts_an_orphan_of_an_earlier_run_and_stops_it(tmp_path: Path) -> None:
    kport, rport = free_port(), free_port()
    data = tmp_path / "data"
    orphan = start_redis("127.0.0.1", rport, data, tmp_path / "logs")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (data / f"redis-{rport}.pid").write_text(json.dumps({"pid": orphan.pid, "owner": dead.pid,
                                                         "binary": redis_binary()}))
    proc = _services(_env(kport, rport, data), tmp_path)
    head = _until(proc, "services up")
    assert f"redis: adopted {Path(redis_binary()).name} pid {orphan.pid} at 127.0.0.1:{rport}" in head
    assert json.loads((data / f"redis-{rport}.pid").read_text())["owner"] == proc.pid
    assert (data / f"broker-{kport}.pid").exists()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert orphan.wait(timeout=30) is not None  # stopped by the run that adopted it
    assert not answers("127.0.0.1", rport) and not answers("127.0.0.1", kport)
    assert not list(data.glob("*.pid"))


def test_services_killed_outright_takes_its_services_along(tmp_path: Path) -> None:
    kport, rport = free_port(), free_port()
    data = tmp_path / "data"
    proc = _services(_env(kport, rport, data), tmp_path)
    _until(proc, "services up")
    pids = [json.loads(p.read_text())["pid"] for p in data.glob("*.pid")]
    assert len(pids) == 2
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(pid_alive(p) for p in pids), 30, 0.1, "tansu and Redis to stop (parent-death signal)")


def test_services_refuses_a_port_held_by_something_else(tmp_path: Path) -> None:
    kport = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        proc = _services(_env(kport, port, tmp_path / "data"), tmp_path)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert f"yadtq: error: port {port} on 127.0.0.1 is held by something that does not speak Redis" in out
    assert "YADTQ_REDIS_URL" in out
    assert not answers("127.0.0.1", kport)  # the broker it had started is stopped again


def test_services_stay_keeps_running_beside_existing_services(tmp_path: Path, services: ServiceAddrs) -> None:
    env = {**_env(0, 0, tmp_path / "data"), "YADTQ_KAFKA_BOOTSTRAP": services.kafka,
           "YADTQ_REDIS_URL": services.redis_url}
    proc = subprocess.Popen([sys.executable, "-m", "yadtq", "services", "--stay"], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    head = _until(proc, "staying up until stopped")
    assert "broker: using the one answering" in head and "redis: using the one answering" in head
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    host, port = services.kafka.split(":")
    assert answers(host, int(port))  # not ours: left running


def test_a_second_services_uses_what_the_first_runs(tmp_path: Path) -> None:
    env = _env(free_port(), free_port(), tmp_path / "data")
    first = _services(env, tmp_path)
    _until(first, "services up")
    try:
        second = _services(env, tmp_path)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0 and "nothing to start" in out
        assert f"run by yadtq services pid {first.pid})" in out and "adopted" not in out
        assert first.poll() is None and answers("127.0.0.1", int(env["YADTQ_REDIS_URL"].rsplit(":", 1)[1][:-2]))
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


def test_services_adopts_an_orphan_without_a_pid_file(tmp_path: Path) -> None:
    """What an earlier version left behind: Redis on our data folder, its `yadtq services` gone."""
    kport, rport = free_port(), free_port()
    data = tmp_path / "data"
    orphan = start_redis("127.0.0.1", rport, data, tmp_path / "logs")
    proc = _services(_env(kport, rport, data), tmp_path)
    head = _until(proc, "services up")
    assert f"redis: adopted {Path(redis_binary()).name} pid {orphan.pid}" in head
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert orphan.wait(timeout=30) is not None and not answers("127.0.0.1", rport)

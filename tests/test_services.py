"""`yadtq services` and the monitor's history, on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import redis

from conftest import ROOT, ServiceAddrs, wait_for
from yadtq.client import YADTQ
from yadtq.config import Settings
from yadtq.services import answers, free_port


def _services(env: dict[str, str], cwd) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "yadtq", "services"], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


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
        w = q.live.workers()["W1"]
        assert w["status"] == "ALIVE" and w["state"] == "idle" and len(ids) == 30

"""One clock: workers whose clocks are 90 s ahead and 90 s behind (libfaketime) behave
exactly like the others. All are shown ALIVE, a killed one is declared DEAD within
the threshold, no lease is taken early, and no task runs twice unless its run was
cut off by the kill."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import Procs, run_cli, wait_for
from kafka import KafkaProducer
from ledger_tasks import read_ledger

from worker_farm.fake_clock import ensure_libfaketime, skewed_env
from yadtq.client.client import YADTQ
from yadtq.config import Settings


@pytest.fixture(scope="session")
def faketime() -> Path:
    """Debian's libfaketime, installed here when missing (CI starts on a fresh machine)."""
    return ensure_libfaketime()


def _skewed_env(procs: Procs, skew: str) -> dict[str, str]:
    return skewed_env(procs.env(), skew, procs.dir / "clock_shim")


def _skewed_worker(procs: Procs, lib: Path, name: str, skew: str) -> subprocess.Popen[str]:
    env = _skewed_env(procs, skew)
    out = open(procs.dir / f"{name}.out", "w")
    proc = subprocess.Popen([sys.executable, "-m", "yadtq", "worker", "--name", name, "--tasks", "ledger_tasks"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=procs.dir,
                            start_new_session=True)
    procs.procs[name] = proc
    return proc


def _alive(q: YADTQ) -> set[str]:
    return {n for n, w in q.live.workers().items() if w["status"] == "ALIVE"}


@pytest.mark.timeout(300)
def test_workers_ninety_seconds_off_behave_like_the_others(settings: Settings, procs: Procs, faketime: Path,
                                                           r: redis.Redis) -> None:
    probe = subprocess.run([sys.executable, "-c", "import time; time.sleep(0.01); print(time.time())"],
                           capture_output=True, text=True, env=_skewed_env(procs, "+90s"))
    assert abs(float(probe.stdout) - time.time() - 90) < 5, ("libfaketime must move the clock", probe.stderr)
    procs.monitor()
    ahead = _skewed_worker(procs, faketime, "AHEAD", "+90s")
    behind = _skewed_worker(procs, faketime, "BEHIND", "-90s")
    procs.worker("ON", "--tasks", "ledger_tasks")
    procs.wait_assigned(["AHEAD", "BEHIND", "ON"])
    assigned = procs.wait_assigned(["AHEAD", "BEHIND", "ON"])
    with YADTQ(settings) as q:
        wait_for(lambda: _alive(q) == {"AHEAD", "BEHIND", "ON"}, 30, 0.2, "all three ALIVE")
        # No lease taken early: a duplicate message of a task that BEHIND is running reaches AHEAD,
        # whose clock says BEHIND's lease ran out long ago. Redis time says it did not.
        held = q.message("ledger_add", [100, 1, 3.0], task_id="dup-1")
        q.backend.record_queued([held], settings.tries)
        raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0)
        raw.send(settings.topic, held.encode(), partition=assigned["BEHIND"][0]).get(timeout=10)
        wait_for(lambda: q.status("dup-1").worker == "BEHIND", 30, 0.05, "BEHIND to run it")
        raw.send(settings.topic, held.encode(), partition=assigned["AHEAD"][0]).get(timeout=10)
        raw.close()
        assert q.result("dup-1", timeout=60) == 101
        ids = q.submit_many([("ledger_add", [i, 1, 1.0]) for i in range(240)])  # ~10 s of work at 8 x 3
        # Busy by its records in Redis (a heartbeat would say so up to an interval late). Looked at
        # first: on a loaded machine BEHIND may run out of its share before the others.
        wait_for(lambda: any(rec.worker == "BEHIND" for rec in q.backend.list("processing", limit=100)), 60, 0.05,
                 "BEHIND busy")
        # While they work, every one of them is shown ALIVE, in the CLI too.
        assert _alive(q) == {"AHEAD", "BEHIND", "ON"}
        listing = run_cli(settings, "workers").stdout
        assert all(re.search(rf"^{n}\s+ALIVE\b", listing, re.M) for n in ("AHEAD", "BEHIND", "ON")), listing
        # Kill -9 the one that lives in the past, mid-task.
        procs.kill9("BEHIND")
        killed = time.time()
        wait_for(lambda: q.live.workers()["BEHIND"]["status"] == "DEAD", settings.dead_after + 20, 0.1, "DEAD")
        assert time.time() - killed <= settings.dead_after + 2 * settings.heartbeat_interval + 5
        deadline = time.monotonic() + 180
        while q.backend.counts()["success"] < len(ids) + 1 and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a condition with a deadline, as wait_for does
        left = [r for r in q.backend.get_many(ids) if r.status != "success"]
        assert not left, [(r.task_id, r.status, r.worker, r.partition, r.attempts) for r in left]
        assert _alive(q) == {"AHEAD", "ON"} and ahead.poll() is None
    ledger = read_ledger(r, settings.prefix)
    assert len(ledger.pop("dup-1")) == 1, "AHEAD took BEHIND's live lease"
    assert sorted(ledger) == sorted(ids)
    twice = {tid: runs for tid, runs in ledger.items() if len(runs) > 1}
    # Only a run cut off by the kill may be run again: no lease was taken early from a live worker.
    assert all(runs[0][0] == behind.pid and len(runs) == 2 for runs in twice.values()), twice
    assert len(twice) <= settings.concurrency, twice

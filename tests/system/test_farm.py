"""The worker farm on real processes: the seeds' demo, respawn, clean stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT, Procs, run_cli, wait_for
from ledger_tasks import read_ledger

from worker_farm import Farm, WorkerSpec
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.logs import EventLog


@pytest.fixture(autouse=True)
def task_modules_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Farm children inherit the environment: let them import tests/ledger_tasks.py."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def test_seeds_demo_failure_prone_worker_and_standby(settings: Settings, q: YADTQ, r) -> None:
    out = Lines()
    farm = Farm(settings, [WorkerSpec("W1", crash="after:3-5", seed=7, tasks=("ledger_tasks",)),
                           WorkerSpec("S1", standby=True, tasks=("ledger_tasks",))], respawn=False, out=out)
    thread = threading.Thread(target=farm.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: out.has("[W1] W1 assigned partitions [0, 1, 2, 3]") and out.has("[S1] S1 assigned partitions []"),
                 40, 0.1, f"W1 to own everything and the standby nothing: {out.lines}")
        ids = q.submit_many([("ledger_add", [i, 1]) for i in range(20)])
        wait_for(lambda: out.has("crashed: crash injected"), 60, 0.1, "the failure-prone worker to crash")
        wait_for(lambda: out.has("[S1] S1 assigned partitions [0, 1, 2, 3]"), 60, 0.1, "the standby to take over")
        wait_for(lambda: q.backend.counts()["success"] == 20, 60, 0.2, "every task to succeed")
        assert out.has("[W1] CRASH W1")
        ledger = read_ledger(r, settings.prefix)
        assert sorted(ledger) == sorted(ids)
        # Only tasks cut off by the crash run again: their earlier run was in W1's process, and W1
        # had at most `concurrency` of them running at once.
        crashed = int(next(line for line in out.lines if "CRASH W1 pid" in line).split("pid ")[1].split()[0])
        again = {tid: runs for tid, runs in ledger.items() if len(runs) > 1}
        assert all(runs[0][0] == crashed and len(runs) == 2 for runs in again.values()), again
        assert len(again) <= settings.concurrency
        assert any(runs[0][0] == crashed for runs in ledger.values())  # W1 ran tasks before it died
        assert "S1" in {rec.worker for rec in q.backend.get_many(ids)} <= {"W1", "S1"}
    finally:
        farm.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_crashed_worker_is_respawned_and_gets_work_back(settings: Settings, q: YADTQ) -> None:
    out = Lines()
    farm = Farm(settings, [WorkerSpec("W1"), WorkerSpec("W2")], respawn=True, out=out)
    thread = threading.Thread(target=farm.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: out.has("[W1] W1 assigned partitions [") and "W2" in farm.children, 40, 0.1, "W1 started")
        victim = farm.children["W1"].proc
        victim.send_signal(signal.SIGKILL)
        wait_for(lambda: out.has("W1 (pid") and out.has("crashed: killed by signal 9"), 30, 0.1, "the crash report")
        wait_for(lambda: out.has("[farm] respawned worker W1"), 30, 0.1, "the respawn")
        wait_for(lambda: sum(1 for line in out.lines if "[W1] W1 assigned partitions [" in line
                             and "[]" not in line) >= 2, 60, 0.2, "W1 to own partitions again")
        ids = q.submit_many([("add", [i, i]) for i in range(40)])
        wait_for(lambda: q.backend.counts()["success"] == 40, 60, 0.2, "the tasks")
        assert "W1" in {rec.worker for rec in q.backend.get_many(ids)}
    finally:
        farm.stop()
        thread.join(timeout=30)


def test_sigterm_stops_every_child_and_end_stops_the_farm(settings: Settings, procs: Procs) -> None:
    env = procs.env()
    farm = subprocess.Popen([sys.executable, "-m", "worker_farm", "--workers", "2", "--standby", "1"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.wait_assigned(["W1", "W2", "S1"])
    out = run_cli(settings, "produce", settings.topic, str(settings.partitions), stdin="add 1 2\nmultiply 2 3\nend\n")
    assert out.returncode == 0
    assert farm.wait(timeout=60) == 0
    text = farm.stdout.read()
    for name in ("W1", "W2", "S1"):
        assert f"[farm] {name} stopped cleanly" in text

    farm = subprocess.Popen([sys.executable, "-m", "worker_farm", "--workers", "2", "--standby", "1",
                             "--name-prefix", "T"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: len(_children(farm.pid)) == 3, 30, 0.1, "three children")
    kids = _children(farm.pid)
    farm.send_signal(signal.SIGTERM)
    assert farm.wait(timeout=60) == 0
    assert [pid for pid in kids if _alive(pid)] == []
    assert "[farm] T1 stopped" in farm.stdout.read()


def test_a_farm_killed_with_sigkill_takes_its_children_along(settings: Settings, procs: Procs) -> None:
    farm = subprocess.Popen([sys.executable, "-m", "worker_farm", "--workers", "2", "--name-prefix", "K"],
                            env=procs.env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        kids = wait_for(lambda: len(_children(farm.pid)) == 2 and _children(farm.pid), 30, 0.1, "two children")
    finally:
        farm.kill()
        farm.wait()
    # No one is left to SIGTERM them: the kernel does (parent-death signal).
    wait_for(lambda: not any(_alive(pid) for pid in kids), 30, 0.2, "the orphans to stop")


def test_farm_start_up_errors_are_one_line(settings: Settings) -> None:
    bad = subprocess.run([sys.executable, "-m", "worker_farm", "--crash", "sometimes"], cwd=ROOT, capture_output=True,
                         text=True, env={**Procs(settings, ROOT).env()})
    assert bad.returncode == 2 and "bad --crash 'sometimes'" in bad.stderr


class _Exits(WorkerSpec):
    """A child that exits at once with `code`: exercises the supervisor without Kafka."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(name)
        object.__setattr__(self, "code", code)

    def argv(self) -> list[str]:
        return [sys.executable, "-c", f"import sys; print('boom', file=sys.stderr); sys.exit({self.code})"]


def test_respawn_backoff_doubles_up_to_its_cap(settings: Settings) -> None:
    out = Lines()
    farm = Farm(settings, [_Exits("X1", 1)], respawn=True, out=out, backoff=0.1, backoff_max=0.4)
    thread = threading.Thread(target=farm.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sum("respawning X1" in line for line in out.lines) >= 5, 30, 0.05, "five respawns")
    finally:
        farm.stop()
        thread.join(timeout=10)
    delays = [line.rsplit(" in ", 1)[1] for line in out.lines if "respawning X1" in line][:5]
    assert delays == ["0.1s", "0.2s", "0.4s", "0.4s", "0.4s"]
    assert out.has("[farm] X1 (pid") and out.has("crashed: exit code 1; last output: 'boom'")
    assert out.has("[farm] respawned worker X1 (pid") and not thread.is_alive()


def test_a_usage_error_is_not_respawned_and_the_farm_fails(settings: Settings) -> None:
    out = Lines()
    farm = Farm(settings, [WorkerSpec("W1", tasks=("no_such_task_module",))], respawn=True, out=out)
    assert farm.run() == 1
    assert out.has("crashed: exit code 2") and out.has("not respawning W1")
    assert out.has("[W1] yadtq: error: cannot import task module 'no_such_task_module'")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_every_crash_is_in_the_failure_history_even_after_a_fast_respawn(settings: Settings, q: YADTQ) -> None:
    out = Lines()
    farm = Farm(settings, [WorkerSpec("W1")], respawn=True, out=out, events=EventLog(settings, "farm"))
    thread = threading.Thread(target=farm.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: out.has("[W1] W1 assigned partitions [0, 1, 2, 3]"), 40, 0.1, f"W1 to start: {out.lines}")
        tid = q.submit("sleep", [3])
        wait_for(lambda: q.status(tid).status == "processing", 30, 0.05, "the task to start")
        pid = farm.children["W1"].proc.pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: out.has("[farm] respawned worker W1"), 30, 0.05, "the respawn")
        failure = q.live.failures(10)[0]
        assert (failure["worker"], failure["pid"], failure["host"]) == ("W1", pid, socket.gethostname())
        assert failure["reason"] == "killed by signal 9 (SIGKILL)" and failure["source"] == "farm"
        assert tid in failure["tasks"] and failure["partitions"] == [0, 1, 2, 3]
        assert out.has(f"[farm] W1 held {tid}")
        farm_said = [json.loads(x) for x in (Path(settings.log_dir) / "farm.events.jsonl").read_text().splitlines()]
        assert any(e["event"] == "worker_crashed" and e["worker_pid"] == pid and tid in e["tasks"] for e in farm_said)
        listing = run_cli(settings, "workers")
        assert "CRASH W1 at " in listing.stdout and f"pid {pid} on " in listing.stdout and tid in listing.stdout
        assert q.wait(tid, 60).status == "success"  # the respawned W1 runs it once its lease lapses
    finally:
        farm.stop()
        thread.join(timeout=30)

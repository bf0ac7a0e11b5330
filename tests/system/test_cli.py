"""The CLI teaches and behaves: help with examples, did-you-mean, --version, progress and ids,
status with times and history, JSON listings, quiet pipes, task modules from the current
folder, and unique live worker names. Real broker and Redis (conftest)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import redis
from conftest import ROOT, Procs, run_cli, wait_for

from yadtq.cli.main import build_parser
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.store.keys import Keys
from yadtq.store.live_state import LiveState
from yadtq.store.worker_names import (
    claim_worker_name,
    name_holder,
    process_space,
    release_worker_name,
    renew_worker_name,
)

UUID_LEN = 36


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_argument_has_help_and_every_command_examples() -> None:
    for name, sub in _subparsers(build_parser()).items():
        assert "examples:" in (sub.epilog or ""), name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"yadtq {name} {action.option_strings or action.dest} has no help"
            takes_value = action.nargs != 0 and not isinstance(action, argparse._StoreTrueAction)
            if takes_value and not action.choices:
                assert "e.g." in action.help or "default" in action.help, f"{name} {action.dest}: {action.help}"
    help_text = run_cli(None, "submit", "--help").stdout
    for task in ("add(a, b)", "multiply(a, b)", "sleep(seconds)", "fail(message)"):
        assert task in help_text
    produce = run_cli(None, "produce", "--help").stdout
    assert "end" in produce and "add 1 2" in produce and '{"task": "add"' in produce
    version = run_cli(None, "--version")
    assert version.returncode == 0 and version.stdout.startswith("yadtq ")


def test_did_you_mean_for_commands_and_task_names(settings: Settings) -> None:
    typo = run_cli(settings, "sumbit", "add", "1", "2")
    assert typo.returncode == 2 and "did you mean 'submit'?" in typo.stderr
    task = run_cli(settings, "submit", "ad", "1", "2")
    assert task.returncode == 2 and "unknown task 'ad'; did you mean 'add'?" in task.stderr
    assert "known: add, divide" in task.stderr
    with YADTQ(settings) as q:
        assert q.backend.counts()["queued"] == 0  # nothing was sent
    anyway = run_cli(settings, "submit", "ad", "1", "2", "--any-task")
    assert anyway.returncode == 0 and len(anyway.stdout.strip()) == UUID_LEN


def test_status_shows_times_attempts_and_history(settings: Settings, procs: Procs) -> None:
    procs.worker("W1")
    out = run_cli(settings, "submit", "fail", "boom", "--tries", "2", "--wait", "--timeout", "60")
    assert out.returncode == 4, out
    tid = out.stdout.splitlines()[0]
    st = run_cli(settings, "status", tid)
    assert st.returncode == 0, st.stderr
    text = st.stdout
    assert text.startswith(f"{tid} fail failed error=")
    for label in ("call       fail(\"boom\")", "submitted  20", "started    20", "finished   20",
                  "attempts   2 of 2, on worker W1", "history"):
        assert label in text, text
    assert "ago)" in text and "ran " in text and "from submission" in text
    as_json = json.loads(run_cli(settings, "status", tid, "--json").stdout)
    assert as_json["status"] == "failed" and as_json["attempts"] == 2
    assert as_json["history"] and all({"ts", "event"} <= set(h) for h in as_json["history"])
    assert len(text.split("history", 1)[1].strip().splitlines()) == len(as_json["history"])


def test_status_after_a_requeue_counts_the_wait_from_the_requeue(settings: Settings, q: YADTQ, procs: Procs,
                                                                   r: redis.Redis) -> None:
    procs.worker("W1")
    tid = q.submit("fail", ["again"], tries=1)
    assert q.wait(tid, 60).status == "failed"
    long_ago = time.time() - 3600  # as if it had been submitted an hour ago
    r.hset(Keys(settings.prefix).task(tid), "submitted", long_ago)
    assert run_cli(settings, "requeue", tid).returncode == 0
    rec = q.wait(tid, 60)
    assert rec.first_submitted == pytest.approx(long_ago) and rec.submitted > long_ago + 3000
    assert rec.started is not None and rec.started - rec.submitted < 30
    text = run_cli(settings, "status", tid).stdout
    lines = {line.split()[0]: line for line in text.splitlines()[1:] if line.startswith("  ") and line.split()}
    assert "(1h 0m ago)" in lines["submitted"] and "requeued" in lines, text
    waited = float(re.search(r"\(waited ([0-9.]+)s\)", lines["started"]).group(1))  # seconds, not "1h 0m"
    assert waited < 30, text
    assert "from the requeue" in lines["finished"], text


def test_dlq_lists_a_requeued_task_once(settings: Settings, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    tid = q.submit("fail", ["twice"], tries=1, task_id="tâche-échouée")  # an id is the user's string
    other = q.submit("fail", ["once"], tries=1)
    assert q.wait(tid, 60).status == "failed" and q.wait(other, 60).status == "failed"
    wait_for(lambda: len(q.live.dead_letters()) == 2, 30, 0.05, "two dead letters")
    assert run_cli(settings, "dlq", "requeue", tid).returncode == 0
    wait_for(lambda: q.status(tid).status == "failed" and q.live.dead_letters()[0]["task_id"] == tid, 60, 0.05,
             "the requeued task to fail again")
    listing = run_cli(settings, "dlq", "list").stdout.splitlines()
    assert sum(tid in line for line in listing) == 1 and len(listing) == 2, listing
    assert tid in listing[0] and "RuntimeError: twice" in listing[0] and other in listing[1], listing


def test_tasks_and_workers_print_json_and_limit_zero_means_counts(settings: Settings, q: YADTQ) -> None:
    q.submit_many([("add", [i, i]) for i in range(3)])
    counts_only = run_cli(settings, "tasks", "--limit", "0")
    assert counts_only.stdout.strip().splitlines() == ["scheduled=0  queued=3  processing=0  success=0  failed=0  cancelled=0  expired=0"]
    listing = json.loads(run_cli(settings, "tasks", "--json", "--limit", "2").stdout)
    assert listing["counts"]["queued"] == 3 and len(listing["tasks"]["queued"]) == 2
    assert run_cli(settings, "tasks", "--limit", "-1").returncode == 2
    workers = json.loads(run_cli(settings, "workers", "--json").stdout)
    assert workers == {"workers": {}, "failures": []}
    empty = run_cli(settings, "dlq")
    assert empty.returncode == 0 and "the dead-letter queue is empty" in empty.stdout


def test_output_piped_to_head_ends_quietly(settings: Settings, q: YADTQ, r: redis.Redis) -> None:
    q.submit_many([("add", [i, i]) for i in range(3000)])
    live = LiveState(r, settings)
    for i in range(1000):
        live.record_failure({"worker": f"W{i}", "declared_at": time.time(), "last_heartbeat": time.time(),
                             "tasks": ["x" * 60]})
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}, **settings.env(),
           "PYTHONPATH": str(ROOT)}
    for cmd in ("tasks --status queued --limit 3000", "workers --limit 1000"):
        out = subprocess.run(["bash", "-c", f"{sys.executable} -m yadtq {cmd} | head -2"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and len(out.stdout.splitlines()) == 2
        assert out.stderr == "", out.stderr


def test_produce_prints_ids_and_progress_and_warns_about_another_topic(settings: Settings, q: YADTQ) -> None:
    lines = "".join(f"add {i} 1\n" for i in range(1500))
    out = run_cli(settings, "produce", settings.topic, str(settings.partitions), "--ids", stdin=lines)
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 1500 and len(set(ids)) == 1500
    recs = q.backend.get_many(ids)
    assert [rec.args for rec in recs] == [[i, 1] for i in range(1500)]
    assert "sent 1500 task(s)" in out.stderr and "done: 1500 sent, 0 bad line(s) skipped" in out.stderr
    assert "warning" not in out.stderr
    other = f"other-{uuid.uuid4().hex[:6]}"
    warned = run_cli(settings, "produce", other, "2", stdin="add 1 2\n")
    assert warned.returncode == 0
    assert f"yadtq: warning: producing to topic {other!r}, but workers" in warned.stderr
    assert repr(settings.topic) in warned.stderr and "done: 1 sent" in warned.stdout


def test_worker_imports_task_modules_from_its_folder_and_names_are_unique(settings: Settings, procs: Procs,
                                                                          q: YADTQ) -> None:
    pkg = procs.dir / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mytasks.py").write_text("from yadtq import task\n\n@task\ndef shout(word: str) -> str:\n"
                                    "    return word.upper() + '!'\n")
    first = procs.worker("W1", "--tasks", "mypkg.mytasks")
    tid = q.submit("shout", ["hey"])
    assert q.result(tid, timeout=60) == "HEY!"

    second = procs.worker("W1b", "--tasks", "mypkg.mytasks", settings=settings)  # another name: accepted
    procs.wait_assigned(["W1", "W1b"])
    dup = procs.start("dup", "worker", "--name", "W1")
    assert dup.wait(timeout=60) == 2
    said = procs.output("dup").strip().splitlines()
    assert said[-1].startswith("yadtq: error: worker name 'W1' is taken by a live worker (pid "), said
    assert f"pid {first.pid} on " in said[-1]
    assert first.poll() is None and second.poll() is None

    # A worker killed outright does not block its own restart on this host.
    procs.kill9("W1")
    again = procs.worker("W1", "--tasks", "mypkg.mytasks")
    # Back in the group under its name. (W1b knows `shout` too: once W1's session lapsed it may hold
    # every partition until the new W1 joins, and a worker rejects a task it does not know.)
    wait_for(lambda: any(e["event"] == "partitions_assigned" and e["pid"] == again.pid and e["partitions"]
                         for e in procs.events("worker-W1")), 60, 0.1, "the restarted W1 to get partitions")
    tid = q.submit("shout", ["again"])
    assert q.result(tid, timeout=90) == "AGAIN!"
    assert again.poll() is None


def test_worker_name_lease_claim_renew_release(settings: Settings, r: redis.Redis) -> None:
    keys = Keys(settings.prefix)
    assert claim_worker_name(r, keys, "W1", "inc-a", 30)
    assert claim_worker_name(r, keys, "W1", "inc-a", 30)  # claiming again renews
    holder = name_holder(r, keys, "W1")
    assert holder is not None and holder.incarnation == "inc-a" and holder.pid == os.getpid()
    assert not claim_worker_name(r, keys, "W1", "inc-b", 30)  # this very process is alive
    assert renew_worker_name(r, keys, "W1", "inc-a", 30)
    assert not renew_worker_name(r, keys, "W1", "inc-b", 30)
    release_worker_name(r, keys, "W1", "inc-b")  # not the holder: no effect
    assert name_holder(r, keys, "W1").incarnation == "inc-a"  # type: ignore[union-attr]
    release_worker_name(r, keys, "W1", "inc-a")
    assert name_holder(r, keys, "W1") is None
    # A lease that is not renewed lapses.
    assert claim_worker_name(r, keys, "W2", "inc-a", 0.2)
    wait_for(lambda: name_holder(r, keys, "W2") is None, 10, 0.05, "the lease to lapse")
    assert claim_worker_name(r, keys, "W2", "inc-b", 30)
    # A holder of this process space (host, boot, pid namespace) whose process is gone is replaced
    # (tests/engine/test_worker_names.py: not one of another space).
    gone = subprocess.Popen(["true"])
    gone.wait()
    r.hset(keys.worker_name("W3"), mapping={"incarnation": "old", "host": os.uname().nodename,
                                           "pid": gone.pid, "since": 0, "space": process_space()})
    r.expire(keys.worker_name("W3"), 60)
    assert claim_worker_name(r, keys, "W3", "new", 30)
    assert name_holder(r, keys, "W3").incarnation == "new"  # type: ignore[union-attr]
    # ... but not one on another host.
    r.hset(keys.worker_name("W4"), mapping={"incarnation": "far", "host": "elsewhere", "pid": gone.pid, "since": 0})
    r.expire(keys.worker_name("W4"), 60)
    assert not claim_worker_name(r, keys, "W4", "new", 30)


@pytest.mark.parametrize("args", [["tasks", "--limit", "-3"], ["dlq", "list", "some-id"], ["requeue"]])
def test_usage_mistakes_are_one_line(settings: Settings, args: list[str]) -> None:
    out = run_cli(settings, *args)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "error" in out.stderr


def test_submit_key_routes_every_task_of_a_key_to_its_partition(settings: Settings, procs: Procs, q: YADTQ) -> None:
    from yadtq.task.messages import key_partition
    procs.worker("W1")
    ids = [run_cli(settings, "submit", "add", str(i), "1", "--key", "customer-42").stdout.strip() for i in range(3)]
    recs = [q.wait(t, 60) for t in ids]
    want = key_partition("customer-42", list(range(settings.partitions)))
    assert [r.status for r in recs] == ["success"] * 3 and {r.partition for r in recs} == {want}


@pytest.mark.brokers("embedded")  # its group join takes half a session timeout: a window to submit in
def test_a_submit_while_the_workers_join_says_so_then_runs(settings: Settings, q: YADTQ, procs: Procs) -> None:
    slow_join = settings.replace(session_timeout_ms=20_000, heartbeat_interval_ms=2_000, max_poll_interval_ms=30_000)
    procs.monitor()
    procs.worker("W1", settings=slow_join)
    wait_for(lambda: q.waiting_note() is not None, 60, 0.1, "the registry to show W1 joining")
    assert "workers are joining the group (W1)" in (q.waiting_note() or "")
    out = run_cli(slow_join, "submit", "add", "1", "2", "--wait", "--timeout", "60", timeout=90)
    assert out.returncode == 0 and "result=3" in out.stdout, out.stderr
    assert "yadtq: waiting: workers are joining the group (W1)" in out.stderr
    # Its assignment is sent at once, not at the next heartbeat: the registry says W1 serves.
    wait_for(lambda: q.waiting_note() is None, 10, 0.1, "the registry to show W1 serving")

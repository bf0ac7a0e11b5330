"""Delayed and expiring tasks on real worker processes, on both brokers: a countdown from the
client, the CLI and the HTTP API holds the task `scheduled` until due (never run before its eta), and a
task whose expiry comes before its eta ends `expired` without running."""

from __future__ import annotations

import json
from typing import Any

from conftest import Procs, run_cli, wait_for

from yadtq.client.client import YADTQ
from yadtq.config import Settings


def test_countdown_from_client_and_cli_runs_after_its_eta_and_an_expiring_task_ends_expired(
        settings: Settings, q: YADTQ, procs: Procs, api: Any) -> None:
    procs.worker("W1")
    # The HTTP API takes the same options; a scheduled task can be cancelled before it is due.
    made = api.post("/tasks", json={"task": "add", "args": [5, 5], "countdown": 60, "expires": 120})
    assert made.status_code == 201 and made.json()["status"] == "scheduled", made.text
    later = made.json()["task_id"]
    assert api.post(f"/tasks/{later}/cancel").json()["status"] == "cancelled"
    assert api.post("/tasks", json={"task": "add", "args": [1, 1], "countdown": -1}).status_code == 422
    # Each looked at as soon as it is submitted: on a loaded machine the CLI's own start takes
    # seconds, long enough for an earlier task's countdown to run out.
    # Scheduled, or already published ahead of the eta (YADTQ_SCHEDULE_LEAD) and held by the worker: not run.
    def not_started(tid: str) -> None:
        rec = q.status(tid)
        assert rec.status in ("scheduled", "queued") and rec.started is None, rec

    by_client = q.submit("add", [1, 2], countdown=1.5)
    not_started(by_client)
    expiring = q.submit("add", [2, 2], countdown=1.0, expires=0.5)
    not_started(expiring)
    sub = run_cli(settings, "submit", "multiply", "6", "7", "--countdown", "1.5", "--json")
    assert sub.returncode == 0, sub.stderr
    by_cli = json.loads(sub.stdout)["task-id"]
    not_started(by_cli)
    assert q.result(by_client, timeout=60) == 3 and q.result(by_cli, timeout=60) == 42
    for tid in (by_client, by_cli):
        rec = q.status(tid)
        assert rec.eta is not None and rec.started is not None and rec.submitted is not None
        assert rec.eta - rec.submitted >= 1.4, "the countdown was not kept"
        assert rec.started >= rec.eta, f"{tid} started {rec.eta - rec.started:.3f}s before its eta"
    wait_for(lambda: q.status(expiring).status == "expired", 30, what="the expiring task expired")
    rec = q.status(expiring)
    assert rec.started is None and rec.attempts == 0 and "expired" in (rec.error or "")
    shown = run_cli(settings, "status", by_cli)
    assert "not before" in shown.stdout and "success" in shown.stdout

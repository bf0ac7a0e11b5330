"""Periodic tasks on real processes: a worker registers and fires its declared every=1 schedule (the
monitor's scheduler races it on every slot), and schedules come and go at run time (CLI and API)."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import Procs, run_cli, wait_for

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.store.schedules import ScheduleState


def _schedule(q: YADTQ, name: str) -> ScheduleState | None:
    return next((s for s in q.schedules() if s.spec.name == name), None)


def _ran(q: YADTQ, name: str, slots: int) -> Any:
    """The schedule once `slots` slots fired and its last task succeeded."""
    s = _schedule(q, name)
    if s is None or s.fired < slots or not s.last_task:
        return None
    return s if q.status(s.last_task).status == "success" else None


def test_a_worker_fires_its_schedule_once_a_slot_and_schedules_come_and_go(
        procs: Procs, q: YADTQ, settings: Settings, api: httpx.Client) -> None:
    procs.worker("W1", "--tasks", "periodic_tasks")
    procs.monitor()
    probe = wait_for(lambda: _ran(q, "probe-1s", 2), 60, 0.1, "2 slots of the declared schedule, the last done")
    assert probe.spec.task == "periodic_probe" and probe.as_dict()["origin"] == "decorator"
    assert q.result(probe.last_task, 10) == "tick"

    added = run_cli(settings, "schedules", "add", "adder", "add", "20", "22", "--every", "1")
    assert added.returncode == 0, added.stderr
    adder = wait_for(lambda: _ran(q, "adder", 1), 30, 0.1, "a slot of the schedule added by the CLI")
    assert q.result(adder.last_task, 10) == 42
    listing = run_cli(settings, "schedules")
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert "every 1s" in lines["adder"] and "next " in lines["adder"] and "ago)" in lines["adder"]

    # The API: the same schedules, with next and last run; add, refuse, remove.
    got = {s["name"]: s for s in api.get("/schedules").json()}
    assert set(got) == {"adder", "probe-1s"} and got["adder"]["next_run"] > got["adder"]["last_run"]
    made = api.post("/schedules", json={"name": "nightly", "task": "add", "args": [1, 2], "cron": "0 3 * * *"})
    assert made.status_code == 201 and made.json()["cron"] == "0 3 * * *", made.text
    assert api.post("/schedules", json={"name": "bad", "task": "add", "cron": "0 0 31 2 *"}).status_code == 422
    assert api.delete("/schedules/nightly").json() == {"name": "nightly", "removed": True}
    assert api.delete("/schedules/nightly").status_code == 404

    removed = run_cli(settings, "schedules", "remove", "adder")
    assert removed.returncode == 0, removed.stderr
    assert [s.spec.name for s in q.schedules()] == ["probe-1s"]

    # Each slot of the declared schedule fired once (a worker and the monitor raced on every one):
    # one task per slot, each run once, each announced by the one scheduler that won it.
    probe = wait_for(lambda: _ran(q, "probe-1s", probe.fired + 1), 30, 0.1, "one more slot")
    ids = [i for i in q.backend.all_ids("success", page=1000) if i.startswith("periodic:probe-1s:")]
    assert len(ids) >= probe.fired - 1 and len(set(ids)) == len(ids)
    assert all(r.attempts == 1 for r in q.backend.get_many(ids))
    fired = [e["task_id"] for e in procs.events("monitor") + procs.events("worker-W1")
             if e["event"] == "schedule_fired" and e["task_id"].startswith("periodic:probe-1s:")]
    assert len(fired) >= probe.fired - 1 and len(fired) == len(set(fired))

"""The CLI's control commands on real processes: cancel a running task, inspect what a worker
runs, pause/resume/stop it, purge finished tasks. Real broker (both kinds) and Redis."""

from __future__ import annotations

import json
import time
from typing import Any

from conftest import Procs, run_cli, wait_for

from yadtq.client.client import YADTQ
from yadtq.config import Settings


def test_cli_cancels_a_running_task_inspects_pauses_resumes_stops_and_purges(settings: Settings, q: YADTQ,
                                                                             procs: Procs) -> None:
    worker = procs.worker("W1")
    procs.monitor()
    long = q.submit("sleep", [120])

    def inspected(want: Any) -> dict[str, Any] | None:
        got = run_cli(settings, "inspect", "--json")
        assert got.returncode == 0, got.stderr
        return next((w for w in json.loads(got.stdout) if w["name"] == "W1" and want(w)), None)

    w1 = wait_for(lambda: inspected(lambda w: [t["task_id"] for t in w["tasks"]] == [long]), 60, 0.2,
                  "inspect to show W1 running the long task")
    assert (w1["tasks"][0]["task"], w1["slots_in_use"], w1["slots"]) == ("sleep", 1, settings.concurrency)
    assert sorted(w1["partitions"]) == list(range(settings.partitions))

    cancel = run_cli(settings, "cancel", long, "no-such-id")
    assert cancel.returncode == 1 and f"{long} cancelled while running" in cancel.stdout
    assert "no task with id 'no-such-id'" in cancel.stderr
    wait_for(lambda: any(e["event"] == "task_cancelled" and e["task_id"] == long
                         for e in procs.events("worker-W1")), 10, 0.1, "the run to be interrupted")
    assert q.status(long).status == "cancelled"

    assert run_cli(settings, "pause", "W1").returncode == 0
    wait_for(lambda: any(e["event"] == "worker_command" and e.get("command") == "pause"
                         for e in procs.events("worker-W1")), 10, 0.1, "W1 to take the pause")
    later = q.submit("add", [1, 2])
    since = time.time()
    # A heartbeat 1.5 s later, still paused, the task still waiting: a worker not paused would have run it.
    wait_for(lambda: (w := q.live.workers().get("W1", {})).get("state") == "paused" and
             w["last_heartbeat"] > since + 1.5, 20, 0.1, "a later heartbeat of the paused worker")
    assert q.status(later).status == "queued"
    resume = run_cli(settings, "resume", "W1", "W9")
    assert resume.returncode == 1 and "no worker named 'W9'" in resume.stderr
    assert q.result(later, timeout=30) == 3

    refused = run_cli(settings, "purge", "--status", "cancelled")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    purge = run_cli(settings, "purge", "--status", "cancelled", "--yes")
    assert purge.stdout.strip() == "purged 1 cancelled task(s)"
    assert q.backend.counts()["cancelled"] == 0

    assert run_cli(settings, "stop", "W1").returncode == 0
    assert worker.wait(timeout=30) == 0

"""Live results on real processes and both brokers: `yadtq status ID --follow` and the API's
server-sent events see a running task's progress, then its success, as they happen."""

from __future__ import annotations

import json

import httpx
from conftest import Procs, wait_for

from yadtq.client.client import YADTQ


def test_follow_and_the_event_stream_see_progress_then_success(api: httpx.Client, q: YADTQ, procs: Procs) -> None:
    tid = q.submit("sleep", [1.0])  # no worker yet: both followers are listening before it runs
    follower = procs.start("follow", "status", tid, "--follow")
    wait_for(lambda: "queued" in procs.output("follow"), 30, 0.05, "the follower's first line")
    events: list[dict] = []
    with api.stream("GET", f"/tasks/{tid}/events", params={"timeout": 90}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                break
        procs.worker("W1")
        for line in lines:
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
            else:
                assert line in ("", "event: task"), line
    assert events[0]["status"] == "queued" and events[-1]["status"] == "success" and events[-1]["done"]
    running = [e["progress"] for e in events if e["status"] == "processing" and e["progress"] is not None]
    assert running and 0 < running[0] < 1 and running == sorted(running), events
    assert follower.wait(30) == 0
    out = procs.output("follow").splitlines()
    assert "queued" in out[0] and "success" in out[-1] and "result=1.0" in out[-1]
    assert any("processing" in line and "%" in line and "slept" in line for line in out), out

"""Workflows on real worker processes, on both brokers: the client, the HTTP API and the CLI."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import Procs, run_cli, wait_for

from yadtq import chain, chord, group
from yadtq.client.client import YADTQ
from yadtq.task.builtins import add, fail, multiply, total


def test_workflows_of_mixed_shapes_through_client_api_and_cli(q: YADTQ, api: httpx.Client, procs: Procs,
                                                               settings: Any) -> None:
    procs.worker("W1")
    shapes = {
        q.submit_workflow(chain(add.s(1, 2), multiply.s(10), add.s(0.5))): 30.5,
        q.submit_workflow(group([add.s(i, i) for i in range(6)])): [0, 2, 4, 6, 8, 10],
        q.submit_workflow(chord(group(add.s(i, 1) for i in range(20)), total.s())): 210.0,
        # a chord inside a chain, after a group: each header member gets the group's list
        q.submit_workflow(chain(add.s(1, 1), chord([multiply.s(2), multiply.s(3)], total.s()), add.s(1))): 11.0,
        q.submit_workflow(q.signature("add", [2, 2]) | q.signature("total", immutable=True, args=[[1, 2]])): 3.0,
    }
    for wid, want in shapes.items():
        assert q.result(wid, timeout=60) == want
    # A callback after a single task, and an error callback after a failing one.
    tid = q.submit("add", [20, 1], link=multiply.s(2))
    assert q.result(tid, timeout=60) == 21
    linked = q.status(tid)
    assert linked.status == "success"
    wait_for(lambda: any(r.result == 42 for r in q.backend.list("success", limit=100)), 60, 0.1, "the link ran")
    bad = q.submit("fail", ["boom"], tries=1, link=add.s(1), link_error=q.signature("total", [[0]]))
    wait_for(lambda: q.status(bad).status == "failed", 60, 0.1, "the failing task")
    # A failing member fails its chord with the member's error; the callback never runs.
    failing = q.submit_workflow(chord([add.s(1, 1), fail.s("member broke").set(tries=1)], total.s()))
    wait_for(lambda: api.get(f"/workflows/{failing}").json()["status"] == "failed", 60, 0.1, "the chord to fail")
    got = api.get(f"/workflows/{failing}").json()
    assert "member broke" in got["error"] and got["nodes"][-1]["state"] == "waiting"

    # The HTTP API: a JSON description in, the state of every node out.
    body = {"workflow": {"type": "chord", "header": {"type": "group", "members": [
        {"task": "add", "args": [1, 1]}, {"task": "add", "args": [2, 2]}]}, "body": {"task": "total"}}}
    posted = api.post("/workflows", json=body)
    assert posted.status_code == 201, posted.text
    wid = posted.json()["workflow_id"]
    assert q.result(wid, timeout=60) == 6.0
    state = api.get(f"/workflows/{wid}").json()
    assert state["status"] == "success" and [n["state"] for n in state["nodes"]] == ["success"] * 5
    assert api.post("/workflows", json={"workflow": {"type": "loop"}}).status_code == 422
    assert api.get("/workflows/wf-nope").status_code == 404

    # The CLI draws the tree.
    shown = run_cli(settings, "workflow", wid)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"workflow {wid}: success  result: 6.0"

"""Workflows as data: building, JSON both ways, the engine's plan, the CLI's tree and the graph layout."""

from __future__ import annotations

import json

import pytest

from dashboard.workflow_graph import figure, layout
from yadtq import Signature, chain, chord, group, signature
from yadtq.cli.workflow_view import workflow_lines
from yadtq.errors import MessageError
from yadtq.store.workflows import NodeState, WorkflowState, is_workflow_id, new_workflow_id, plan
from yadtq.task.builtins import add, total
from yadtq.task.canvas import from_dict


def test_task_functions_make_signatures_and_immutable_ones() -> None:
    assert add.s(1, 2) == Signature("add", (1, 2))
    assert add.si(1, b=2) == Signature("add", (1,), {"b": 2}, immutable=True)
    assert signature("resize", ["a.png"], {"width": 10}, tries=2).to_dict() == {
        "type": "task", "task": "resize", "args": ["a.png"], "kwargs": {"width": 10}, "immutable": False, "tries": 2}


def test_group_takes_members_or_a_list_and_pipes_make_chains() -> None:
    a, b = add.s(1, 1), add.s(2, 2)
    assert group(a, b) == group([a, b])
    assert (a | b | total.s()) == chain(a, b, total.s())
    assert chord([a, b], total.s()).header == group(a, b)


@pytest.mark.parametrize("wf", [
    chain(add.s(1, 2), add.s(3)),
    group(add.s(1, 1), add.s(2, 2)),
    chord(group(add.s(1, 1), chain(add.s(1, 1), add.s(2))), total.s()),
    chain(group(add.s(1, 1)), chord([add.s(1)], total.s().set(tries=5, time_limit=2.5)), add.si(0, 0)),
    group(),
])
def test_every_shape_survives_json_both_ways(wf: object) -> None:
    d = wf.to_dict()
    assert from_dict(json.loads(json.dumps(d))) == wf


@pytest.mark.parametrize("bad, why", [
    ({"type": "loop"}, "unknown workflow node type"),
    ({"type": "chain", "steps": []}, "at least one step"),
    ({"type": "group", "members": {}}, "needs a list"),
    ({"type": "chord", "header": {"task": "add"}, "body": {"task": "total"}}, "header must be a group"),
    ({"task": "add", "args": "12"}, "args must be a list"),
    ({"task": "add", "tries": 0}, "tries"),
    ({"task": "add", "time_limit": float("inf")}, "time_limit"),
    ({"task": ""}, "non-empty"),
    ([1], "must be an object"),
])
def test_bad_descriptions_say_what_is_wrong(bad: object, why: str) -> None:
    with pytest.raises(MessageError, match=why):
        from_dict(bad)


def test_too_deep_a_workflow_is_refused() -> None:
    d: dict[str, object] = {"task": "add"}
    for _ in range(40):
        d = {"type": "chain", "steps": [d]}
    with pytest.raises(MessageError, match="deeper"):
        from_dict(d)


def test_the_plan_numbers_nodes_depth_first_with_parents_positions_and_member_ids() -> None:
    wid = new_workflow_id()
    assert is_workflow_id(wid) and not is_workflow_id("3f1c2b9e")
    p = plan(wid, chord([add.s(1, 1), add.s(2, 2).set(task_id="mine")], total.s()), 3)
    f = p.fields
    assert [f[f"k:{i}"] for i in range(5)] == ["chord", "group", "task", "task", "task"]
    assert (f["c:0"], f["c:1"]) == ("1,4", "2,3")
    assert [f[f"p:{i}"] for i in range(5)] == ["-1,0", "0,1", "1,1", "1,2", "0,2"]
    assert p.task_ids == [f"{wid}.2", "mine", f"{wid}.4"]
    spec = json.loads(f["spec:2"])
    assert spec["args"] == "[1, 1]" and spec["tries"] == "3" and spec["immutable"] is False
    with pytest.raises(MessageError, match="twice"):
        plan(wid, group(add.s(1, 1).set(task_id="x"), add.s(1, 1).set(task_id="x")), 3)


def test_an_error_callback_serves_the_first_task() -> None:
    p = plan("wf-1", chain(add.s(1, 2), add.s(3)), 3, errback=signature("log_error"))
    assert p.fields["p:3"] == "-2,1" and json.loads(p.fields["spec:1"])["errback"] == "3"


def _state() -> WorkflowState:
    nodes = [NodeState(0, "chord", -1, 0, "running", [1, 4]), NodeState(1, "group", 0, 1, "running", [2, 3]),
             NodeState(2, "task", 1, 1, "success", [], "add", "wf-1.2", 2),
             NodeState(3, "task", 1, 2, "failed", [], "add", "wf-1.3", None, "boom"),
             NodeState(4, "task", 0, 2, "waiting", [], "total", "wf-1.4")]
    return WorkflowState("wf-1", "failed", None, "add (wf-1.3) failed: boom", 1.0, 2.0, nodes, {})


def test_the_cli_tree_and_the_graph_layout() -> None:
    wf = _state()
    lines = workflow_lines(wf)
    assert lines[0] == "workflow wf-1: failed" and "boom" in lines[1]
    assert [ln.split()[0] for ln in lines[2:]] == ["chord", "group", "add", "add", "total"]
    assert "success  2" in lines[4] and lines[5].rstrip().endswith("boom")
    pos = layout(wf)
    assert pos[2] == (2.0, 0.0) and pos[3] == (2.0, 1.0) and pos[1] == (1.0, 0.5) and pos[4] == (1.0, 2.0)
    assert len(figure(wf).data) == 2

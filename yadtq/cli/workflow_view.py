"""`yadtq workflow ID`: a workflow as an indented tree, one line per node with its state."""

from __future__ import annotations

import json

from yadtq.store.workflows import NodeState, WorkflowState

MAX_VALUE = 60  # characters of a result shown on a node's line


def workflow_lines(wf: WorkflowState) -> list[str]:
    head = f"workflow {wf.workflow_id}: {wf.status}"
    if wf.status == "success":
        head += f"  result: {_short(wf.result)}"
    lines = [head]
    if wf.error:
        lines.append(f"  error: {wf.error}")
    by_index = {n.index: n for n in wf.nodes}
    if by_index:
        _walk(by_index, 0, 1, lines)
    for n in wf.nodes:
        if n.parent == -2:
            lines.append(f"  on error of node {n.position}:")
            _walk(by_index, n.index, 2, lines)
    return lines


def _walk(nodes: dict[int, NodeState], i: int, depth: int, out: list[str]) -> None:
    n = nodes[i]
    name = n.kind if n.task is None else f"{n.task} ({n.task_id})"
    line = f"{'  ' * depth}{name:<{max(8, 56 - 2 * depth)}} {n.state}"
    if n.kind == "task" and n.state == "success":
        line += f"  {_short(n.result)}"
    if n.error and n.state in ("failed", "cancelled"):
        line += f"  {n.error[:MAX_VALUE]}"
    out.append(line)
    for c in n.children:
        _walk(nodes, c, depth + 1, out)


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 3] + "..."

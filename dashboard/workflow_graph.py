"""A workflow drawn as a tree (plotly, no graphviz): containers left, their members to the right.

Leaves take one row each in order; a container sits at the middle of its children, so a chain
reads top to bottom and a group's members stack beside their group. Colour is the node's state.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from yadtq.store.workflows import NodeState, WorkflowState

COLOURS = {"success": "#2e7d32", "failed": "#c62828", "cancelled": "#6d4c41", "processing": "#f9a825",
           "running": "#1565c0", "queued": "#90a4ae", "waiting": "#e0e0e0"}


def layout(wf: WorkflowState) -> dict[int, tuple[float, float]]:
    """Node index -> (x: depth, y: row); error callbacks go below the tree."""
    nodes = {n.index: n for n in wf.nodes}
    pos: dict[int, tuple[float, float]] = {}
    row = [0.0]

    def place(i: int, depth: int) -> float:
        kids = nodes[i].children
        if not kids:
            y = row[0]
            row[0] += 1
        else:
            ys = [place(c, depth + 1) for c in kids]
            y = sum(ys) / len(ys)
        pos[i] = (float(depth), y)
        return y

    if nodes:
        place(0, 0)
    for n in wf.nodes:
        if n.parent == -2:
            place(n.index, 1)
    return pos


def label(n: NodeState) -> str:
    return n.kind if n.task is None else n.task


def figure(wf: WorkflowState) -> go.Figure:
    pos = layout(wf)
    ex: list[Any] = []
    ey: list[Any] = []
    for n in wf.nodes:
        for c in n.children:
            ex += [pos[n.index][0], pos[c][0], None]
            ey += [pos[n.index][1], pos[c][1], None]
        if n.parent == -2:  # an error callback: a dotted line from the task it serves
            ex += [pos[n.position][0], pos[n.index][0], None]
            ey += [pos[n.position][1], pos[n.index][1], None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line={"color": "#9e9e9e", "width": 1}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=[pos[n.index][0] for n in wf.nodes], y=[pos[n.index][1] for n in wf.nodes], mode="markers+text",
        text=[label(n) for n in wf.nodes], textposition="middle right",
        marker={"size": 16, "color": [COLOURS.get(n.state, "#000000") for n in wf.nodes],
                "symbol": ["circle" if n.kind == "task" else "square" for n in wf.nodes]},
        hovertext=[f"{label(n)} #{n.index}: {n.state}" + (f"<br>{n.task_id}" if n.task_id else "")
                   + (f"<br>{n.error[:120]}" if n.error else "") for n in wf.nodes],
        hoverinfo="text"))
    rows = max((y for _, y in pos.values()), default=0) + 1
    fig.update_layout(showlegend=False, height=min(1200, 120 + 28 * rows), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"visible": False}, yaxis={"visible": False, "autorange": "reversed"})
    return fig

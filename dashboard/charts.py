"""Plotly figures of the pages' data. Each plots only the window shown, so its axes fit what is on screen."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from yadtq.task.status import Status

COLORS = {Status.SCHEDULED: "#5b8def", Status.QUEUED: "#9aa5b1", Status.PROCESSING: "#f0a500",
          Status.SUCCESS: "#2e9e5b", Status.FAILED: "#d64545", Status.CANCELLED: "#7b61ff", Status.EXPIRED: "#8d6e63"}
# Distinct hues for series that are only names (workers); the theme's default shades of one blue are not.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
STATE_COLORS = {"idle": "#2e9e5b", "busy": "#f0a500", "standby": "#5b8def", "paused": "#7b61ff",
                "stopping": "#9aa5b1"}

# No Plotly toolbar: on a narrow chart it is drawn over the title (drag to zoom, double-click to reset).
CHART_CONFIG = {"displayModeBar": False}


def queue_depth(series: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for status, color in COLORS.items():
        if status in series:
            fig.add_scatter(x=series["time"], y=series[status], name=status, mode="lines", line={"color": color})
    return _layout(fig, "Tasks by status", "tasks")


def worker_throughput(frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for i, (worker, rows) in enumerate(frame.groupby("worker", sort=True)):
        fig.add_scatter(x=rows["time"], y=rows["tasks/s"], name=str(worker), mode="lines",
                        line={"color": PALETTE[i % len(PALETTE)]})
    return _layout(fig, "Completions per second, per worker", "tasks/s")


def heartbeat_timeline(beats: pd.DataFrame, dead_after: float) -> go.Figure:
    """One row per worker, a mark per heartbeat coloured by the worker's state: a gap is silence."""
    fig = go.Figure()
    for state, rows in beats.groupby("state", sort=True):
        fig.add_scatter(x=rows["time"], y=rows["worker"], name=str(state), mode="markers",
                        marker={"color": STATE_COLORS.get(str(state), "#444"), "size": 7},
                        customdata=rows[["pid", "gap (s)"]], hovertemplate="%{y} pid %{customdata[0]}<br>"
                        "%{x}<br>gap %{customdata[1]} s<extra>" + str(state) + "</extra>")
    late = beats[beats["gap (s)"] > dead_after]
    if len(late):
        fig.add_scatter(x=late["time"], y=late["worker"], name=f"after a gap over {dead_after:g} s", mode="markers",
                        marker={"symbol": "x", "color": "#d64545", "size": 11})
    fig.update_yaxes(categoryorder="category descending")  # W1 on top
    return _layout(fig, "Heartbeats (gaps are silence)", None)


def type_counts(types: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for outcome, color in (("succeeded", COLORS[Status.SUCCESS]), ("failed", COLORS[Status.FAILED]),
                           ("cancelled", COLORS[Status.CANCELLED])):
        fig.add_bar(x=types["task"], y=types[outcome], name=outcome, marker_color=color)
    fig.update_layout(barmode="stack")
    return _layout(fig, "Finished per task type", "tasks")


def type_success(types: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=types["task"], y=types["success rate"], marker_color=COLORS[Status.SUCCESS],
                           name="success rate", text=types["success rate"].map(_percent), textposition="outside",
                           cliponaxis=False))
    fig.update_yaxes(range=[0, 110], tickvals=[0, 25, 50, 75, 100])
    return _layout(fig, "Success rate per task type", "%", legend=False)


def type_times(types: pd.DataFrame, what: str) -> go.Figure:
    """Run time or queue wait p50 and p95 per type (`what` is "run" or "queue wait")."""
    fig = go.Figure()
    for q, color in (("p50", "#5b8def"), ("p95", "#1f3f8f")):
        fig.add_bar(x=types["task"], y=types[f"{what} {q} (s)"], name=q, marker_color=color)
    fig.update_layout(barmode="group")
    return _layout(fig, f"{what.capitalize()} per task type", "seconds")


def _percent(v: float | None) -> str:
    return "" if v is None or pd.isna(v) else f"{v:.0f}%"


def _layout(fig: go.Figure, title: str, y_title: str | None, legend: bool = True) -> go.Figure:
    fig.update_layout(title=title, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=legend,
                      legend={"orientation": "h", "y": -0.25, "title": None})
    fig.update_yaxes(title=y_title, rangemode="tozero", autorange=True if y_title != "%" else None)
    fig.update_xaxes(title=None)
    return fig

"""Plotly figures of a snapshot."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

COLORS = {"queued": "#9aa5b1", "processing": "#f0a500", "success": "#2e9e5b", "failed": "#d64545"}


def queue_depth(series: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for status, color in COLORS.items():
        fig.add_scatter(x=series["time"], y=series[status], name=status, mode="lines", line={"color": color})
    return _layout(fig, "Tasks by status over time")


def worker_throughput(frame: pd.DataFrame) -> go.Figure:
    if frame.empty:
        return _layout(go.Figure(), "Completions per second per worker")
    fig = px.line(frame, x="time", y="tasks/s", color="worker")
    return _layout(fig, "Completions per second per worker")


def heartbeat_timeline(beats: pd.DataFrame, dead_after: float) -> go.Figure:
    """One row per worker, a mark per heartbeat: a gap is a stretch with no marks."""
    if beats.empty:
        return _layout(go.Figure(), "Heartbeats")
    df = beats.assign(time=pd.to_datetime(beats["ts"], unit="s")).sort_values("ts")
    df["gap (s)"] = df.groupby("worker")["ts"].diff().round(1)
    df["late"] = df["gap (s)"] > dead_after
    fig = px.scatter(df, x="time", y="worker", color="state", symbol="late" if df["late"].any() else None,
                     hover_data=["pid", "current_task", "gap (s)"],
                     symbol_map={False: "circle", True: "x"},
                     color_discrete_map={"idle": "#2e9e5b", "busy": "#f0a500", "standby": "#5b8def",
                                         "stopping": "#9aa5b1"})
    return _layout(fig, "Heartbeats (gaps are silence; ✕ late)")


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.2})
    return fig

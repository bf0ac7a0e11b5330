"""How the task tables (Tasks, Failures) show their columns: what a user reads first comes first and
whole, the long ones (ids, arguments) last; each header's help says where the rest is."""

from __future__ import annotations

from typing import Any

import streamlit as st

# The frame's columns (dashboard.data.tasks_frame), in the order shown.
TASK_ORDER = ("task", "status", "error", "run time", "started", "finished", "worker", "attempts", "progress",
              "submitted", "args", "result", "task id")
_TIME_HELP = "local time; with the date when not today"


def task_columns() -> dict[str, Any]:
    """Widths and help for `st.dataframe(..., column_order=TASK_ORDER, column_config=task_columns())`."""
    c = st.column_config
    return {
        "task": c.TextColumn("task", width="small"),
        "status": c.TextColumn("status", width="small"),
        "error": c.TextColumn("error", width="large",
                              help="the error's first line; select the row for the whole text"),
        "run time": c.TextColumn("run time", width="small"),
        "started": c.TextColumn("started", width="small", help=_TIME_HELP),
        "finished": c.TextColumn("finished", width="small", help=_TIME_HELP),
        "submitted": c.TextColumn("submitted", width="small", help=_TIME_HELP),
        "worker": c.TextColumn("worker", width="small"),
        "attempts": c.NumberColumn("attempts", width="small"),
        "progress": c.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent", width="small",
                                     help="what a task last reported of its run"),
        "args": c.TextColumn("args", width="medium", help="the first 80 characters; select the row for all"),
        "result": c.TextColumn("result", width="small", help="the first 80 characters; select the row for all"),
        "task id": c.TextColumn("task id", width="medium"),
    }

"""Schedules: the periodic schedules with their next and last run; add one, remove one."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.common import settings, show_notice, source, viewer_tz
from dashboard.data import local_time
from yadtq.errors import YADTQError

st.title("Schedules")
show_notice()
st.caption("Periodic tasks: those `@periodic` declares (registered when a worker that imports them starts) "
           "and those added at run time. Every worker and the monitor fire them; each slot fires once. "
           "Cron times are UTC.")


def schedules_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    tz = viewer_tz()
    return pd.DataFrame([{
        "name": r["name"], "task": r["task"],
        "arguments": json.dumps({"args": r["args"], **({"kwargs": r["kwargs"]} if r["kwargs"] else {})}),
        "when": f"every {r['every']}s" if r["every"] is not None else f"cron {r['cron']}",
        "next run": local_time(r["next_run"], tz), "last run": local_time(r["last_run"], tz),
        "last task": r["last_task"] or "", "fired": r["fired"], "skipped": r["skipped"],
        "catch up": r["catch_up"], "from": r["origin"]} for r in rows],
        columns=["name", "task", "arguments", "when", "next run", "last run", "last task", "fired", "skipped",
                 "catch up", "from"])


@st.fragment(run_every=settings().dashboard_refresh)
def live() -> None:
    rows = source().schedules()
    if not rows:
        st.info("No schedules yet: add one below, or declare one with @periodic above @task.")
        return
    st.dataframe(schedules_frame(rows), hide_index=True, key="schedules")


live()

if not settings().dashboard_allow_destructive:
    st.caption("Adding and removing schedules is off: set YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE=true to enable it.")
else:
    with st.form("add-schedule"):
        st.subheader("Add a schedule")
        name_col, task_col, args_col = st.columns(3)
        name = name_col.text_input("Name", placeholder="nightly")
        task = task_col.text_input("Task", placeholder="add")
        args = args_col.text_input("Arguments (JSON list)", value="[]")
        kind_col, when_col, catch_col = st.columns(3)
        kind = kind_col.radio("Timing", ["every", "cron"], horizontal=True)
        when = when_col.text_input("Seconds, or cron expression (UTC)", placeholder="10  or  */5 * * * *")
        catch_up = catch_col.selectbox("A slot missed while nothing ran", ["once", "skip"])
        if st.form_submit_button("Add"):
            try:
                every = int(when) if kind == "every" else None
                added = source().add_schedule(name.strip(), task.strip(), every=every,
                                              cron=when if kind == "cron" else None, args=json.loads(args or "[]"),
                                              catch_up=catch_up)
                st.session_state["notice"] = ("success", f"Added {added}")
            except (YADTQError, ValueError) as exc:
                st.session_state["notice"] = ("error", f"Not added: {exc}")
            st.rerun()
    names = [s["name"] for s in source().schedules()]
    if names:
        pick, button = st.columns([3, 1], vertical_alignment="bottom")
        who = pick.selectbox("Schedule", names, key="remove-schedule")
        if button.button("Remove", key="remove-schedule-button"):
            source().remove_schedule(who)
            st.session_state["notice"] = ("success", f"Removed {who}")
            st.rerun()

"""Failures: failed tasks (requeue them), worker deaths, dead letters."""

from __future__ import annotations

import time

import streamlit as st

from dashboard import data
from dashboard.columns import TASK_ORDER, task_columns
from dashboard.common import requeue, show_notice, source, viewer_tz
from yadtq.task.status import Status

st.title("Failures")
show_notice()
tz = viewer_tz()
f = data.load_failures(source())
counts = source().counts()

st.subheader(f"Failed tasks ({counts[Status.FAILED]:,}; newest {data.PAGE} shown)")
failed = data.tasks_frame(f.failed.tasks, time.time(), tz)
picked = st.dataframe(failed, hide_index=True, on_select="rerun", selection_mode="multi-row", key="failed",
                      column_order=TASK_ORDER, column_config=task_columns())
chosen = [str(failed.iloc[i]["task id"]) for i in picked.selection.rows]
if st.button(f"Requeue {len(chosen)} selected", disabled=not chosen, key="requeue-failed"):
    for tid in chosen:
        requeue(tid)
    st.rerun()

st.subheader("Dead letters")
st.caption("Records that could not be run (unreadable, unknown task, out of tries), newest first.")
letters = data.dead_letters_frame(f.dead_letters, tz)
picked_letters = st.dataframe(letters, hide_index=True, on_select="rerun", selection_mode="multi-row", key="dlq")
chosen_letters = [str(letters.iloc[i]["task id"]) for i in picked_letters.selection.rows
                  if letters.iloc[i]["task id"]]
if st.button(f"Requeue {len(chosen_letters)} selected", disabled=not chosen_letters, key="requeue-dlq"):
    for tid in chosen_letters:
        requeue(tid)
    st.rerun()

st.subheader("Worker deaths")
st.dataframe(data.deaths_frame(f.deaths, tz), hide_index=True, key="deaths")

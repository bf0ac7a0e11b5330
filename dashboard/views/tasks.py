"""Tasks: search and filter, then one task's page with its record, history and actions."""

from __future__ import annotations

import json
import time

import streamlit as st

from dashboard import data
from dashboard.columns import TASK_ORDER, task_columns
from dashboard.common import cancel, open_task, requeue, settings, show_notice, source, viewer_tz
from yadtq.store import search
from yadtq.task.status import STATUSES, Status

ANY_TIME = "any time"

st.title("Tasks")

with st.form("search"):
    a, b, c = st.columns(3)
    name = a.text_input("Task name", help="exact name, e.g. add")
    statuses = b.multiselect("Status", STATUSES, placeholder="any status")
    worker = c.text_input("Worker", help="exact worker name")
    d, e = st.columns([2, 1])
    error = d.text_input("Error contains", help="any case")
    when = e.selectbox("Entered its status in the last", [ANY_TIME, *data.WINDOWS])
    if st.form_submit_button("Search", type="primary"):
        st.session_state["query"] = {"statuses": tuple(statuses or STATUSES), "task": name.strip() or None,
                                     "worker": worker.strip() or None, "error": error.strip() or None,
                                     "since": None if when == ANY_TIME else time.time() - data.WINDOWS[when]}
        st.session_state["cursors"] = [None]

query = search.TaskQuery(**st.session_state.get("query", {}))
cursors: list[str | None] = st.session_state.setdefault("cursors", [None])
page = data.find_tasks(source(), query, cursors[-1])
tz = viewer_tz()
frame = data.tasks_frame(page.tasks, time.time(), tz)
more = " (more beyond: page on)" if page.next_cursor else ""
st.caption(f"Page {len(cursors)}: {len(page.tasks)} task(s), newest first, from {page.scanned:,} examined{more}. "
           "Select a row to open the task.")
picked = st.dataframe(frame, hide_index=True, on_select="rerun", selection_mode="single-row", key="results",
                      column_order=TASK_ORDER, column_config=task_columns())
if picked.selection.rows:
    open_task(str(frame.iloc[picked.selection.rows[0]]["task id"]))
left, right, _ = st.columns([1, 1, 6])
if left.button("Newer", disabled=len(cursors) == 1):
    cursors.pop()
    st.rerun()
if right.button("Older", disabled=not page.next_cursor):
    cursors.append(page.next_cursor)
    st.rerun()


@st.fragment(run_every=settings().dashboard_refresh)
def task_page() -> None:
    tid = st.session_state.get("task")
    if not tid:
        return
    view = data.load_task(source(), tid, settings().dashboard_prune_after)
    st.divider()
    show_notice()  # the outcome of a button below (they rerun only this fragment)
    if view is None:
        st.warning(f"No task with id {tid!r}")
        return
    r = view.record
    now = time.time()
    st.subheader(f"Task {r.task_id}: {r.status}")
    c = st.columns(5)
    c[0].metric("Task", r.task)
    c[1].metric("Status", r.status)
    c[2].metric("Attempts", f"{r.attempts} of {r.tries or '?'}")
    run = (r.finished - r.started) if r.finished and r.started and r.status != Status.CANCELLED else \
        (now - r.started if r.status == Status.PROCESSING and r.started else None)
    c[3].metric("Run time" + (" so far" if r.status == Status.PROCESSING else ""), data.duration(run) or "-")
    c[4].metric("Worker", r.worker or "-")
    if r.progress is not None:  # what the task last reported (live while it runs)
        st.progress(r.progress, text=f"{r.progress:.0%}" + (f": {r.progress_message}" if r.progress_message else ""))
    if view.waiting_because:
        st.info(f"Waiting: {view.waiting_because}")
    times = {"submitted": r.submitted, "started": r.started, "finished": r.finished}
    st.table([{"when": k, "local time": data.local_time(v, tz), "ago": data.ago(v, now).removesuffix(" ago")}
              for k, v in times.items() if v])
    a, b = st.columns(2)
    a.caption("Arguments")
    a.code(json.dumps({"args": r.args, "kwargs": r.kwargs}, indent=1)[:4000], language="json")
    if r.error:
        b.caption("Error")
        b.code(r.error[:4000], language=None)
    elif r.status == Status.SUCCESS:
        b.caption("Result")
        b.code(json.dumps(r.result, indent=1)[:4000], language="json")
    if view.history:
        st.caption("History (what the times above cannot tell)")
        st.table([{"local time": data.local_time(ts, tz), "event": text} for ts, text in view.history])
    x, y, _ = st.columns([1, 1, 6])
    x.button("Requeue", on_click=requeue, args=(r.task_id,), disabled=r.status in (Status.PROCESSING, Status.SUCCESS),
             help="run it again from its record (failed, cancelled or stuck queued tasks)", key="requeue")
    y.button("Cancel", on_click=cancel, args=(r.task_id,), disabled=r.done,
             help="a waiting task never runs; a running one is interrupted (as a time limit would)", key="cancel")


task_page()

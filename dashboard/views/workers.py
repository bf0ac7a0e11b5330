"""Workers and partitions: who is doing what, and why tasks wait."""

from __future__ import annotations

import streamlit as st

from dashboard import data
from dashboard.common import settings, source, viewer_tz
from yadtq.store.worker_commands import COMMANDS

st.title("Workers and partitions")


@st.fragment(run_every=settings().dashboard_refresh)
def live() -> None:
    s = settings()
    farm = data.load_farm(source(), s.dashboard_prune_after)
    st.info(data.why_waiting(farm))
    st.subheader("Workers")
    st.dataframe(data.workers_frame(farm.workers, farm.at, viewer_tz()), hide_index=True, key="workers")
    st.subheader("Partitions")
    parts = data.partitions_frame(farm.partitions)
    if parts.empty:
        st.caption("No live worker owns a partition.")
    else:
        counted = any(p["in_broker"] is not None for p in farm.partitions)
        in_broker = ("records past it not read yet" if counted
                     else "records past it not read yet; empty on the embedded broker, which cannot count them")
        st.caption(f"Committed: the position the group resumes from. In broker: {in_broker}. "
                   "Buffered: records read and not finished. Waiting: buffered records not running, and why.")
        st.dataframe(parts, hide_index=True, key="partitions")


live()

st.subheader("Control a worker")
if not settings().dashboard_allow_destructive:
    st.caption("Pause, resume and stop are off: set YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE=true to enable them.")
else:
    names = sorted(w["name"] for w in source().workers())
    if names:
        pick, *cols = st.columns([3, 1, 1, 1, 4], vertical_alignment="bottom")
        who = pick.selectbox("Worker", names, key="control-worker")
        for col, command in zip(cols, COMMANDS, strict=False):
            if col.button(command.capitalize(), key=f"control-{command}"):
                source().command_worker(who, command)
                st.success(f"Sent {command} to {who}; it takes it within about a second.")
    else:
        st.caption("No worker has sent a heartbeat yet.")

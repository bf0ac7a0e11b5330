"""Queues: per named queue, tasks waiting, how long the oldest has waited, throughput, dead letters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.common import settings, source
from yadtq.cli.display import duration

st.title("Queues")
st.caption("Counted in Redis. Throughput: tasks finished per second over the last minute, estimated from "
           "the newest finished tasks. Workers serve queues with `yadtq worker --queues high,default,low`.")


@st.fragment(run_every=settings().dashboard_refresh)
def queues_panel() -> None:
    rows = source().queues()
    frame = pd.DataFrame([{"queue": r.queue, "topic": settings().topic_for(r.queue), "queued": r.queued,
                           "oldest waiting": duration(r.lag) if r.lag is not None else "-",
                           "finished / s": r.throughput, "dead letters": r.dead_letters} for r in rows])
    st.dataframe(frame, hide_index=True)


queues_panel()

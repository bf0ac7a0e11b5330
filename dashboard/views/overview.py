"""Overview: counts, throughput, heartbeats, and per-type figures over a chosen window."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data
from dashboard.common import settings, source, viewer_tz
from yadtq.task.status import STATUSES

st.title("Overview")
window_name = st.segmented_control("Window", list(data.WINDOWS), default="15 minutes", key="window")
window = data.WINDOWS[window_name or "15 minutes"]


@st.fragment(run_every=settings().dashboard_refresh)
def live() -> None:
    s = settings()
    o = data.load_overview(source(), window, s.dashboard_prune_after, viewer_tz())
    if o.waiting:
        st.info(o.waiting[0].upper() + o.waiting[1:] + ".", icon=":material/hourglass_top:")
    # A row that wraps rather than seven fixed columns, which cut "123,456" to "12…" on a laptop.
    counts = st.container(horizontal=True, gap="large")
    for status in STATUSES:
        counts.metric(status.capitalize(), f"{o.counts.get(status, 0):,}", width="content")
    c = st.columns(3, gap="small")
    c[0].metric("Workers alive", o.alive, delta=f"{o.dead} dead" if o.dead else None, delta_color="inverse")
    c[1].metric("Throughput now", f"{o.throughput_now:,.1f}/s")
    c[2].metric("Oldest queued", data.duration(o.at - o.oldest_queued) if o.oldest_queued else "none")
    left, middle, right = st.columns(3)
    left.plotly_chart(charts.queue_depth(o.series), config=charts.CHART_CONFIG, key="depth")
    middle.plotly_chart(charts.worker_throughput(o.throughput), config=charts.CHART_CONFIG, key="throughput")
    right.plotly_chart(charts.heartbeat_timeline(o.heartbeats, s.dead_after), config=charts.CHART_CONFIG, key="beats")
    finished = sum(o.stats.finished_in_window.values())
    # Per-type figures come from the newest `sampled` records: said in the title and in every count's header.
    sample = "" if o.stats.complete else f" (a sample: the newest {o.stats.sampled:,} of {finished:,})"
    st.subheader(f"Task types, last {window_name}{sample}")
    types = data.types_frame(o.stats)
    note = "all of them counted" if o.stats.complete else \
        f"the counts and figures per type are over the newest {o.stats.sampled:,} of them"
    st.caption(f"{finished:,} task(s) finished in the window, {note}. Run time: the last attempt's start to its "
               "end. Queue wait: submission to the start of the last attempt.")
    if types.empty:
        st.info("No task finished in this window.")
        return
    st.dataframe(types, hide_index=True, key="types",
                 column_config={"success rate": st.column_config.NumberColumn(format="%.1f%%"),
                                **({} if o.stats.complete else {"finished": st.column_config.NumberColumn(
                                    "in sample", help=f"of the newest {o.stats.sampled:,} finished")}),
                                **{c: st.column_config.NumberColumn(format="%.3f") for c in types.columns
                                   if c.endswith("(s)")}})
    a, b, c2, d = st.columns(4)
    a.plotly_chart(charts.type_counts(types), config=charts.CHART_CONFIG, key="type-counts")
    b.plotly_chart(charts.type_success(types), config=charts.CHART_CONFIG, key="type-success")
    c2.plotly_chart(charts.type_times(types, "run"), config=charts.CHART_CONFIG, key="type-run")
    d.plotly_chart(charts.type_times(types, "queue wait"), config=charts.CHART_CONFIG, key="type-wait")
    st.caption(f"Refreshed every {s.dashboard_refresh:g} s · {source().where}")


live()

"""Workflows: the newest ones, and one drawn as a graph with each node's state."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard.charts import CHART_CONFIG
from dashboard.common import show_notice, source
from dashboard.workflow_graph import COLOURS, figure

st.title("Workflows")
show_notice()
rows = [{"workflow id": w["workflow_id"], "status": w["status"], "result": json.dumps(w["result"])[:80],
         "error": w["error"] or ""} for w in source().recent_workflows(50)]
frame = pd.DataFrame(rows, columns=["workflow id", "status", "result", "error"])
picked = st.dataframe(frame, hide_index=True, on_select="rerun", selection_mode="single-row", key="workflows")
chosen = str(frame.iloc[picked.selection.rows[0]]["workflow id"]) if picked.selection.rows else ""
wid = st.text_input("Workflow id", value=chosen, placeholder="wf-...").strip()
if wid:
    wf = source().workflow(wid)
    if wf is None:
        st.warning(f"No workflow {wid} (unknown, or expired with its results)")
    else:
        st.subheader(f"{wf.status}" + (f": {json.dumps(wf.result)[:200]}" if wf.status == "success" else ""))
        if wf.error:
            st.error(wf.error)
        st.plotly_chart(figure(wf), width="stretch", config=CHART_CONFIG)
        # A swatch of each state's colour beside its name (the colours alone say nothing).
        st.html("<div style='font-size:0.85rem;color:#555'>" + " &nbsp; ".join(
            f"<span style='color:{colour}'>&#9679;</span> {state}" for state, colour in COLOURS.items()) + "</div>")
        st.dataframe(pd.DataFrame([n.as_dict() for n in wf.nodes]).astype({"result": str}), hide_index=True)

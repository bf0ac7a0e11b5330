"""YADTQ live dashboard: `streamlit run dashboard/app.py` (the Procfile runs it).

Settings come from the same `YADTQ_*` variables as every other process. The
live panels refresh every `YADTQ_DASHBOARD_REFRESH` seconds without reloading
the page; every read goes through the library's bounded read API.
"""

from __future__ import annotations

import hmac
import json
import random
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard import charts  # noqa: E402
from dashboard.data import PAGE, load_snapshot  # noqa: E402
from yadtq.client import YADTQ  # noqa: E402
from yadtq.config import Settings  # noqa: E402
from yadtq.errors import TaskNotFound, YADTQError  # noqa: E402
from yadtq.tasks import load_task_modules, registry  # noqa: E402

st.set_page_config(page_title="YADTQ", page_icon="⚙️", layout="wide")


@st.cache_resource
def client() -> YADTQ:
    return YADTQ(Settings.from_env())


def signed_in(settings: Settings) -> bool:
    if not settings.dashboard_password:
        return True
    if st.session_state.get("signed_in"):
        return True
    given = st.text_input("Password", type="password", key="password")
    if given and hmac.compare_digest(given, settings.dashboard_password):
        st.session_state["signed_in"] = True
        st.rerun()
    if given:
        st.error("Wrong password.")
    return False


def parse_args(text: str) -> list:
    """A JSON array, or space-separated values each read as JSON (else a string)."""
    text = text.strip()
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError("arguments must be a list")
        return value
    out = []
    for word in text.split():
        try:
            out.append(json.loads(word))
        except ValueError:
            out.append(word)
    return out


RANDOM_ARGS = {"add": lambda: [random.randint(0, 99), random.randint(0, 99)],
               "subtract": lambda: [random.randint(0, 99), random.randint(0, 99)],
               "multiply": lambda: [random.randint(0, 20), random.randint(0, 20)],
               "divide": lambda: [random.randint(0, 99), random.randint(0, 9)],
               "sleep": lambda: [round(random.uniform(0.1, 2.0), 2)],
               "fail": lambda: ["demo failure"],
               "flaky": lambda: [0.3, random.randint(0, 9)]}


def sidebar(q: YADTQ) -> None:
    with st.sidebar:
        st.header("Submit a task")
        names = registry.names()
        with st.form("submit"):
            name = st.selectbox("Task", names, index=names.index("add") if "add" in names else 0)
            params = ", ".join(f"{p}: {a}" if a else p for p, a in registry.describe(name))
            text = st.text_input("Arguments", value="1 2", help=f"{name}({params}); values or a JSON array")
            tries = st.number_input("Tries", min_value=1, max_value=20, value=q.settings.tries)
            if st.form_submit_button("Submit", type="primary"):
                try:
                    tid = q.submit(name, parse_args(text), tries=int(tries))
                    st.session_state["lookup"] = tid
                    st.success(f"Submitted {tid}")
                except (ValueError, YADTQError) as exc:
                    st.error(f"Not submitted: {exc}")
        st.header("Demo load")
        kinds = st.multiselect("Task types", [n for n in names if n in RANDOM_ARGS], default=["add", "multiply"])
        count = st.number_input("How many", min_value=1, max_value=100_000, value=100, step=100)
        if st.button("Submit random tasks") and kinds:
            ids = q.submit_many([(k, RANDOM_ARGS[k]()) for k in random.choices(kinds, k=int(count))])
            st.success(f"Submitted {len(ids)} tasks")
        st.header("Find a task")
        st.text_input("Task id", key="lookup")
        if q.settings.dashboard_allow_destructive:
            st.header("Maintenance")
            requeue_id = st.text_input("Requeue failed task id")
            if st.button("Requeue") and requeue_id:
                try:
                    st.success(f"Requeued {q.requeue(requeue_id.strip())}")
                except YADTQError as exc:
                    st.error(str(exc))
            status = st.selectbox("Purge finished", ["failed", "success"])
            if st.button(f"Purge up to 1,000 {status} tasks"):
                st.success(f"Purged {q.backend.purge(status)} {status} task(s)")


def lookup(q: YADTQ) -> None:
    tid = (st.session_state.get("lookup") or "").strip()
    if not tid:
        return
    try:
        rec = q.status(tid)
    except TaskNotFound:
        st.warning(f"No task with id {tid!r}")
        return
    with st.expander(f"Task {tid}: {rec.status}", expanded=False):
        st.json(rec.as_dict())
        history = q.backend.events(tid)
        if history:
            st.caption("History beyond the timestamps above")
            st.table([{"time": f"{ts:.3f}", "event": text} for ts, text in history])


def live(q: YADTQ) -> None:
    s = q.settings
    offsets = {k: st.session_state.get(f"page-{k}", 0) * PAGE for k in ("queued", "processing", "success", "failed")}
    snap = load_snapshot(q, s.dashboard_prune_after, offsets=offsets)
    lookup(q)  # inside the live panel: a followed task's status updates by itself
    c = st.columns(7)
    for col, status in zip(c, ("queued", "processing", "success", "failed")):
        col.metric(status.capitalize(), f"{snap.counts[status]:,}")
    c[4].metric("Workers alive", snap.alive)
    c[5].metric("Workers dead", snap.dead)
    c[6].metric("Throughput now", f"{snap.throughput_now:,.0f}/s")
    left, middle, right = st.columns(3)
    left.plotly_chart(charts.queue_depth(snap.series), use_container_width=True, key="depth")
    middle.plotly_chart(charts.worker_throughput(snap.throughput), use_container_width=True, key="throughput")
    right.plotly_chart(charts.heartbeat_timeline(snap.heartbeats, s.dead_after), use_container_width=True, key="beats")
    tabs = st.tabs(["Workers", "In queue", "In progress", "Recent successes", "Failed", "Failure history",
                    "Dead letters"])
    tabs[0].dataframe(snap.workers, hide_index=True, use_container_width=True)
    for tab, status in zip(tabs[1:5], ("queued", "processing", "success", "failed")):
        tab.caption(f"{snap.counts[status]:,} {status}; showing up to {PAGE} from #{offsets[status] + 1}")
        tab.dataframe(snap.tasks[status], hide_index=True, use_container_width=True)
    tabs[5].dataframe(snap.failures, hide_index=True, use_container_width=True)
    tabs[6].dataframe(snap.dead_letters, hide_index=True, use_container_width=True)
    st.caption(f"Refreshed every {s.dashboard_refresh:g}s · Redis {s.redis_url.split('@')[-1]} · topic {s.topic}")


def main() -> None:
    settings = Settings.from_env()
    st.title("YADTQ")
    if not signed_in(settings):
        return
    load_task_modules([m for m in settings.dashboard_tasks.split(",") if m])
    q = client()
    sidebar(q)
    with st.sidebar.expander("Pages of the task lists"):
        for status in ("queued", "processing", "success", "failed"):
            st.number_input(f"{status} page", min_value=0, value=0, key=f"page-{status}")
    st.fragment(run_every=settings.dashboard_refresh)(live)(q)


main()

"""YADTQ dashboard: `streamlit run dashboard/app.py` (the Procfile runs it).

Six pages: Overview, Tasks, Workers and partitions, Failures, Schedules, Workflows. Settings come
from the same `YADTQ_*` variables as every other process. Live panels refresh
every `YADTQ_DASHBOARD_REFRESH` seconds without reloading the page; every read
goes through the library's bounded read API (`dashboard/data.py`), on Redis or, with
`YADTQ_DASHBOARD_API`, through the HTTP API (`dashboard/source.py`).
"""

from __future__ import annotations

import hmac
import json
import random
import sys
from pathlib import Path
from typing import Any

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.common import open_task, source
from yadtq.config import Settings
from yadtq.errors import YADTQError
from yadtq.task.modules import load_task_modules
from yadtq.task.registry import registry
from yadtq.task.status import Status

st.set_page_config(page_title="YADTQ", page_icon="⚙️", layout="wide")
# Live panels rerun every few seconds: Streamlit greys an element out while its new value is on its way,
# which on a refresh this frequent reads as flicker. The old value stays as it is until replaced.
st.html("<style>[data-stale='true'], [data-stale='true'] * {opacity: 1 !important; transition: none !important;}"
        "</style>")
HERE = Path(__file__).resolve().parent


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


def parse_args(text: str) -> list[Any]:
    """A JSON array, or space-separated values each read as JSON (else a string)."""
    text = text.strip()
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError("arguments must be a list")
        return value
    out: list[Any] = []
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


def sidebar(tasks_page: Any) -> None:
    q = source()
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
                    tid = q.submit(name, parse_args(text), int(tries))
                    open_task(tid)
                    st.success(f"Submitted {tid}")
                except (ValueError, YADTQError) as exc:
                    st.error(f"Not submitted: {exc}")
        st.header("Demo load")
        kinds = st.multiselect("Task types", [n for n in names if n in RANDOM_ARGS], default=["add", "multiply"])
        count = st.number_input("How many", min_value=1, max_value=100_000, value=100, step=100)
        if st.button("Submit random tasks") and kinds:
            ids = q.submit_many([(k, RANDOM_ARGS[k]()) for k in random.choices(kinds, k=int(count))])
            st.success(f"Submitted {len(ids)} tasks")
        st.header("Open a task")
        with st.form("open"):
            tid = st.text_input("Task id")
            if st.form_submit_button("Open task") and tid.strip():
                open_task(tid)
                st.switch_page(tasks_page)
        if q.settings.dashboard_allow_destructive:
            st.header("Maintenance")
            status = st.selectbox("Purge finished", [Status.FAILED, Status.SUCCESS, Status.CANCELLED])
            if st.button(f"Purge up to 1,000 {status} tasks"):
                st.success(f"Purged {q.purge(status)} {status} task(s)")


def main() -> None:
    settings = Settings.from_env()
    if not signed_in(settings):
        st.title("YADTQ")
        return
    load_task_modules([m for m in settings.dashboard_tasks.split(",") if m])
    pages = {name: st.Page(HERE / "views" / f"{name}.py", title=title, icon=icon, default=name == "overview")
             for name, title, icon in (("overview", "Overview", ":material/monitoring:"),
                                       ("tasks", "Tasks", ":material/list_alt:"),
                                       ("workers", "Workers and partitions", ":material/dns:"),
                                       ("queues", "Queues", ":material/stacks:"),
                                       ("failures", "Failures", ":material/error:"),
                                       ("schedules", "Schedules", ":material/schedule:"),
                                       ("workflows", "Workflows", ":material/account_tree:"))}
    current = st.navigation(list(pages.values()))
    sidebar(pages["tasks"])
    current.run()


main()

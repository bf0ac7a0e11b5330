"""The dashboard's panels, run with Streamlit's AppTest against real Redis data."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import ROOT, Procs, wait_for
from yadtq.client import YADTQ
from yadtq.config import Settings

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture
def app(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    def make(**extra: str) -> AppTest:
        for k, v in {**settings.env(), **extra}.items():
            monkeypatch.setenv(k, v)
        st.cache_resource.clear()  # the cached client belongs to another test's settings
        return AppTest.from_file(APP, default_timeout=30)
    return make


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_panels_show_live_counts_workers_and_tables(app, settings: Settings, q: YADTQ, procs: Procs) -> None:
    procs.monitor()
    procs.worker("W1")
    ok = q.submit_many([("add", [i, i]) for i in range(12)])
    bad = q.submit("fail", ["boom"], tries=1)
    wait_for(lambda: q.backend.counts()["success"] == 12 and q.status(bad).status == "failed", 60, 0.1, "tasks")
    wait_for(lambda: len(q.live.series(10)) >= 2 and q.live.series(1)[0]["success"] == 12, 30, 0.2, "samples")
    at = app().run()
    assert not at.exception, at.exception
    m = _metrics(at)
    assert (m["Success"], m["Failed"], m["Queued"], m["Workers alive"]) == ("12", "1", "0", "1")
    tables = {t.label if hasattr(t, "label") else i: t.value for i, t in enumerate(at.dataframe)}
    frames = list(tables.values())
    workers = frames[0]
    assert list(workers["worker"]) == ["W1"] and workers.iloc[0]["done"] == 12
    successes, failed = frames[3], frames[4]
    assert set(successes["task id"]) == set(ok) and list(failed["task id"]) == [bad]
    assert "RuntimeError: boom" in failed.iloc[0]["error"]
    assert len(at.get("plotly_chart")) == 3


def test_submit_form_and_lookup(app, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    at = app().run()
    at.sidebar.text_input[0].set_value("20 22")
    at.sidebar.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    tid = at.session_state["lookup"]
    assert q.result(tid, timeout=60) == 42
    at.run()
    expander = at.expander[0]
    assert tid in expander.label and "success" in expander.label


def test_bad_arguments_are_reported_not_submitted(app, q: YADTQ) -> None:
    at = app().run()
    at.sidebar.text_input[0].set_value("[1, 2")
    at.sidebar.button[0].click().run()
    assert any("Not submitted" in e.value for e in at.error)
    assert q.backend.counts() == {"queued": 0, "processing": 0, "success": 0, "failed": 0}


def test_dead_workers_leave_the_live_view_but_stay_in_history(app, settings: Settings, q: YADTQ,
                                                                procs: Procs) -> None:
    procs.monitor()
    procs.worker("W1")
    wait_for(lambda: q.live.workers().get("W1", {}).get("status") == "ALIVE", 30, 0.1, "W1 alive")
    procs.kill9("W1")
    wait_for(lambda: q.live.workers()["W1"]["status"] == "DEAD", 30, 0.2, "W1 dead")
    at = app().run()
    assert _metrics(at)["Workers dead"] == "1"
    at = app(YADTQ_DASHBOARD_PRUNE_AFTER="0").run()
    frames = [d.value for d in at.dataframe]
    assert frames[0].empty  # pruned from the live view...
    assert list(frames[5]["worker"]) == ["W1"]  # ...still in the failure history


def test_password_guards_everything(app, q: YADTQ) -> None:
    at = app(YADTQ_DASHBOARD_PASSWORD="s3cret").run()
    assert not at.metric and not at.sidebar.button
    at.text_input[0].set_value("wrong").run()
    assert at.error and not at.metric
    at.text_input[0].set_value("s3cret").run()
    assert at.metric


def test_destructive_actions_only_when_enabled(app, q: YADTQ, procs: Procs) -> None:
    assert not [b for b in app().run().sidebar.button if "Purge" in b.label]
    procs.worker("W1")
    tid = q.submit("fail", ["x"], tries=1)
    q.wait(tid, 60)
    at = app(YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE="true").run()
    purge = [b for b in at.sidebar.button if "Purge" in b.label][0]
    at.sidebar.selectbox[1].set_value("failed")
    purge.click().run()
    assert q.backend.counts()["failed"] == 0

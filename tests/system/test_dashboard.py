"""The dashboard's pages, run with Streamlit's AppTest against real Redis data and real workers."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import pytest
import streamlit as st
from conftest import ROOT, Procs, wait_for
from streamlit.testing.v1 import AppTest

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.store.worker_commands import take_commands

APP = str(ROOT / "dashboard" / "app.py")
PAGES = ("views/overview.py", "views/tasks.py", "views/workers.py", "views/failures.py")


@pytest.fixture
def app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    def make(page: str | None = None, **extra: str) -> AppTest:
        for k, v in {**settings.env(), **extra}.items():
            monkeypatch.setenv(k, v)
        st.cache_resource.clear()  # the cached client belongs to another test's settings
        at = AppTest.from_file(APP, default_timeout=30).run()
        if page:
            at.switch_page(page).run()
        assert not at.exception, at.exception
        return at
    return make


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _frames(at: AppTest) -> list:
    return [d.value for d in at.dataframe]


def test_overview_counts_charts_and_task_types(app, q: YADTQ, procs: Procs) -> None:
    procs.monitor()
    procs.worker("W1")
    ok = q.submit_many([("add", [i, i]) for i in range(12)] + [("multiply", [i, 2]) for i in range(4)])
    bad = q.submit("fail", ["boom"], tries=1)
    for tid in [*ok, bad]:
        q.wait(tid, 60)
    wait_for(lambda: len(q.live.series(10)) >= 2 and q.live.series(1)[0]["success"] == 16, 30, 0.2, "samples")
    at = app()
    m = _metrics(at)
    assert (m["Success"], m["Failed"], m["Queued"], m["Cancelled"], m["Workers alive"]) == ("16", "1", "0", "0", "1")
    assert m["Oldest queued"] == "none"
    types = _frames(at)[0].set_index("task")
    assert types.loc["add", "finished"] == 12 and types.loc["add", "success rate"] == 100.0
    assert types.loc["fail", "failed"] == 1 and types.loc["fail", "success rate"] == 0.0
    assert types.loc["multiply", "run p95 (s)"] >= types.loc["multiply", "run p50 (s)"] >= 0
    assert len(at.get("plotly_chart")) == 7


def test_search_open_requeue_and_cancel(app, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    adds = q.submit_many([("add", [i, 1]) for i in range(5)])
    bad = q.submit("fail", ["disk full"], tries=1)
    for tid in [*adds, bad]:
        q.wait(tid, 60)
    at = app("views/tasks.py")
    assert len(_frames(at)[0]) == 6
    inputs = {t.label: t for t in at.main.text_input}
    inputs["Error contains"].set_value("DISK")
    at.main.button[0].click().run()  # Search
    results = _frames(at)[0]
    assert list(results["task id"]) == [bad] and results.iloc[0]["status"] == "failed"
    at.session_state["task"] = bad
    at.run()
    assert f"Task {bad}: failed" in [s.value for s in at.subheader]
    assert any("disk full" in c.value for c in at.code)
    [requeue] = [b for b in at.main.button if b.label == "Requeue"]
    requeue.click().run()
    assert not at.exception, at.exception
    wait_for(lambda: len([e for _, e in q.backend.events(bad) if e.startswith("failed by")]) == 2, 60, 0.1,
             "the requeued run")
    running = q.submit("sleep", [60])  # a running task is cancelled from its page too: its run is interrupted
    wait_for(lambda: q.status(running).status == "processing", 60, 0.1, "the long task to run")
    at.session_state["task"] = running
    at.run()
    [cancel] = [b for b in at.main.button if b.label == "Cancel"]
    cancel.click().run()
    assert "while running on W1" in (q.status(running).error or "")
    wait_for(lambda: any(e["event"] == "task_cancelled" for e in procs.events("worker-W1")), 10, 0.1,
             "the run to be interrupted")
    procs.stop_all()
    waiting = q.submit("add", [1, 1])
    at.session_state["task"] = waiting
    at.run()
    assert any("no worker is alive" in i.value for i in at.info)
    [cancel] = [b for b in at.main.button if b.label == "Cancel"]
    cancel.click().run()
    assert q.status(waiting).status == "cancelled"
    assert any(f"Cancelled {waiting}" in s.value for s in at.success)


def test_task_times_are_human(app, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    tid = q.submit("sleep", [0.2])  # it reports its progress
    q.wait(tid, 60)
    at = app("views/tasks.py")
    row = _frames(at)[0].iloc[0]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", row["finished"])  # today: the time alone (23:09:29)
    assert row["run time"].endswith(("ms", " s"))
    assert row["progress"] == 1.0  # shown as a bar in the table
    at.session_state["task"] = tid
    at.run()
    bars = at.get("progress")
    assert len(bars) == 1 and bars[0].proto.value == 100 and "100%" in bars[0].proto.text


def test_workers_partitions_and_controls(app, q: YADTQ, procs: Procs) -> None:
    procs.monitor()
    procs.worker("W1")
    wait_for(lambda: len(q.live.workers().get("W1", {}).get("partitions", [])) == 4, 40, 0.2, "W1 with partitions")
    at = app("views/workers.py")
    workers, partitions = _frames(at)
    assert list(workers["worker"]) == ["W1"] and workers.iloc[0]["host"] and workers.iloc[0]["pid"] > 0
    assert "ago)" in workers.iloc[0]["last heartbeat"]
    assert list(partitions["partition"]) == [0, 1, 2, 3] and set(partitions["owner"]) == {"W1"}
    assert at.info[0].value == "Nothing is waiting."
    assert not [b for b in at.main.button if b.label == "Pause"]  # guarded like destructive actions
    at = app("views/workers.py", YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE="true")
    procs.stop_all()  # the old engine ignores commands; the channel itself is what is checked here
    [pause] = [b for b in at.main.button if b.label == "Pause"]
    pause.click().run()
    [resume] = [b for b in at.main.button if b.label == "Resume"]
    resume.click().run()
    assert take_commands(q.redis, q.live.keys, "W1") == ["pause", "resume"]


def test_failures_page_requeues_and_shows_deaths(app, q: YADTQ, procs: Procs) -> None:
    procs.monitor()
    procs.worker("W1")
    bad = q.submit("fail", ["x"], tries=1)
    q.wait(bad, 60)
    # The step that stored the failure wrote its dead letter in the same call: there already, before the kill.
    assert [d["task_id"] for d in q.live.dead_letters(10)] == [bad]
    wait_for(lambda: q.live.workers().get("W1", {}).get("status") == "ALIVE", 30, 0.1, "W1 alive")
    procs.kill9("W1")
    wait_for(lambda: q.live.workers()["W1"]["status"] == "DEAD", 30, 0.2, "W1 dead")
    at = app("views/failures.py")
    failed, letters, deaths = _frames(at)
    assert list(failed["task id"]) == [bad] and list(letters["task id"]) == [bad]
    assert list(deaths["worker"]) == ["W1"] and deaths.iloc[0]["declared dead"].startswith("20")


def test_bad_arguments_are_reported_not_submitted(app, q: YADTQ) -> None:
    at = app()
    at.sidebar.text_input[0].set_value("[1, 2")
    at.sidebar.button[0].click().run()
    assert any("Not submitted" in e.value for e in at.error)
    assert sum(q.backend.counts().values()) == 0


def test_submit_form_opens_the_task(app, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    at = app()
    at.sidebar.text_input[0].set_value("20 22")
    at.sidebar.button[0].click().run()
    assert not at.exception, at.exception
    tid = at.session_state["task"]
    assert q.result(tid, timeout=60) == 42


def test_password_guards_everything(app, q: YADTQ) -> None:
    at = app(YADTQ_DASHBOARD_PASSWORD="s3cret")
    assert not at.metric and not at.sidebar.button
    at.text_input[0].set_value("wrong").run()
    assert at.error and not at.metric
    at.text_input[0].set_value("s3cret").run()
    assert at.metric


def test_destructive_purge_only_when_enabled(app, q: YADTQ, procs: Procs) -> None:
    assert not [b for b in app().sidebar.button if "Purge" in b.label]
    procs.worker("W1")
    tid = q.submit("fail", ["x"], tries=1)
    q.wait(tid, 60)
    at = app(YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE="true")
    purge = next(b for b in at.sidebar.button if "Purge" in b.label)
    at.sidebar.selectbox[1].set_value("failed")
    purge.click().run()
    assert q.backend.counts()["failed"] == 0


@pytest.mark.parametrize("page", PAGES)
def test_no_deprecation_warnings(app, q: YADTQ, procs: Procs, page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit import deprecation_util

    said: list[str] = []
    monkeypatch.setattr(deprecation_util, "_shown_warnings", set())
    monkeypatch.setattr(deprecation_util._LOGGER, "warning", lambda msg, *a, **k: said.append(str(msg)))
    procs.worker("W1")
    q.wait(q.submit("fail", ["so every table has a row"], tries=1), 60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        at = app(page, YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE="true")
    said += [str(w.message) for w in caught if "deprecat" in str(w.message).lower()]
    assert not said
    assert not at.exception and not at.warning


@pytest.mark.brokers("embedded")  # the page reads Redis only
def test_queues_page_shows_each_queue_with_its_topic_and_depth(app, q: YADTQ) -> None:
    q.submit_many([{"task": "add", "args": [1, 2], "queue": "email"}] * 2 + [("add", [3, 4])])
    at = app("views/queues.py")
    frame = _frames(at)[0].set_index("queue")
    assert frame.loc["email", "queued"] == 2 and frame.loc["default", "queued"] == 1
    assert frame.loc["email", "topic"] == f"{q.settings.topic}.email"

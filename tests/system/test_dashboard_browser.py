"""The running dashboard of a running system, driven in headless Chromium through every page.

It searches, opens a task, requeues it, cancels one, pauses and resumes a worker, and keeps
a screenshot of each page in docs/ (the README shows them). It walks twice: on Redis, and
through the HTTP API (`YADTQ_DASHBOARD_API`, bearer token) with Redis and the broker out of
its reach (their addresses point at closed ports), as a dashboard outside the cluster runs.
The dashboard runs in a venv of requirements.txt alone, installed as `make run` installs it
(`--no-deps`: without the packages the lock leaves out), so every page is shown to work there.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Procs, serve_api, wait_for

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import answers, free_port
from yadtq.store import search
from yadtq.task.builtins import add, multiply, total
from yadtq.task.canvas import chain, chord

CHROMIUM = "/usr/bin/chromium"
SAMPLE = search.DEFAULT_SAMPLE
LONG = 8  # sleep(600) tasks, cancelled after the screenshots: half the workers' 16 slots busy meanwhile
LOAD = 300  # sleep(0.25) tasks beside them: about 10 s of work on the 8 slots they leave
DOCS = ROOT / "docs"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed here when missing (CI starts on a fresh machine)."""
    if not Path(CHROMIUM).exists():
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            done = subprocess.run(cmd, capture_output=True, text=True, env={"DEBIAN_FRONTEND": "noninteractive",
                                                                            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            assert done.returncode == 0, f"{' '.join(cmd)} failed: {done.stderr[-2000:]}"
    return CHROMIUM


@pytest.fixture(scope="session")
def runtime_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The python of a venv made as `make run` makes it (the package itself comes from PYTHONPATH)."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    uv = str(Path(sys.executable).parent / "uv")  # the dev venv's (Makefile)
    # The Makefile's own recipe, its pruning of the wheels' test suites and headers included.
    subprocess.run(["make", "-s", "-C", str(ROOT), "venv", f"VENV={venv}"], check=True, timeout=600)
    python = str(venv / "bin" / "python")
    # Consistent but for what the lock leaves out on purpose (tests/unit/test_lock.py), which is not there.
    check = subprocess.run([uv, "pip", "check", "--python", python], capture_output=True, text=True, timeout=120)
    gaps = [line for line in (check.stdout + check.stderr).splitlines() if "requires" in line]
    assert gaps and all(re.search(r"requires `(altair|pillow|pydeck)\b", line) for line in gaps), check.stderr
    # Every module of the package and the farm imports there too (the pages are the walk's).
    probe = subprocess.run([python, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=300, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert probe.stdout.strip().splitlines()[-1:] == ["[] []"], probe.stdout + probe.stderr
    return python


IMPORT_ALL = """
import importlib, importlib.util, pkgutil
failed = []
for pkg in ("yadtq", "worker_farm"):
    for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."):
        if info.name.endswith("__main__"):  # runs the command
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:
            failed.append(f"{info.name}: {e!r}")
print(failed, [m for m in ("altair", "PIL", "pydeck", "pytest") if importlib.util.find_spec(m)])
"""


def _start_dashboard(procs: Procs, tmp_path: Path, python: str, api: str | None = None) -> int:
    port = free_port()
    env = procs.env()
    env["YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE"] = "true"
    env["YADTQ_DASHBOARD_REFRESH"] = "1.5"
    if api:  # through the API only: Redis and the broker are where nothing answers
        env.update(YADTQ_DASHBOARD_API=api, YADTQ_API_TOKEN=TOKEN, YADTQ_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                   YADTQ_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    with open(tmp_path / "streamlit.out", "w") as log:
        app = subprocess.Popen([python, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                                "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless",
                                "true", "--browser.gatherUsageStats", "false"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=ROOT)  # as the Procfile runs it: .streamlit/config.toml applies
    procs.procs["streamlit"] = app  # killed at teardown with the rest
    wait_for(lambda: answers("127.0.0.1", port), 60, 0.2, "streamlit to listen")
    return port


TOKEN = "dash-t0ken"


@contextlib.contextmanager
def _api(mode: str, settings: Settings, q: YADTQ) -> Iterator[str | None]:
    """In "api" mode, the HTTP API with a bearer token (served in this process); its address."""
    if mode != "api":
        yield None
        return
    with serve_api(settings.replace(api_token=TOKEN), q, {"Authorization": f"Bearer {TOKEN}"}) as client:
        yield str(client.base_url)


def _settle(page: Any) -> None:
    """Waits for the page's script run to finish (Streamlit shows a running indicator meanwhile)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=30_000)


def _dimmed(page: Any) -> list[str]:
    """The element containers drawn at less than full opacity now (Streamlit's stale-element fade)."""
    return list(page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stElementContainer"]'))
        .filter(e => parseFloat(getComputedStyle(e).opacity) < 0.99).map(e => e.innerText.slice(0, 40))"""))


# The workflow graph's state colours (dashboard/workflow_graph.py COLOURS) as the browser reports them.
GREEN, RED, BLUE, GREY = "rgb(46, 125, 50)", "rgb(198, 40, 40)", "rgb(21, 101, 192)", "rgb(224, 224, 224)"


def _marker_fills(page: Any) -> list[str]:
    """The fill colour of each node of the workflow graph drawn now."""
    return list(page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot .scatterlayer .point'))
        .map(p => p.style.fill)"""))


def _clipped(page: Any) -> list[str]:
    """The metrics whose value does not fit its box (Streamlit cuts it with an ellipsis)."""
    return list(page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
        .filter(e => [e, ...e.querySelectorAll('*')].some(x => x.scrollWidth > x.clientWidth + 1))
        .map(e => e.innerText)"""))


@pytest.mark.browser
def test_walk_every_page(chromium: str, runtime_python: str, settings: Settings, q: YADTQ, procs: Procs,
                         tmp_path: Path) -> None:
    _walk_in_mode("redis", chromium, runtime_python, settings, q, procs, tmp_path)


@pytest.mark.browser
@pytest.mark.brokers("embedded")  # once: what differs is the API between the dashboard and the system
def test_walk_every_page_through_the_api(chromium: str, runtime_python: str, settings: Settings, q: YADTQ,
                                         procs: Procs, tmp_path: Path) -> None:
    _walk_in_mode("api", chromium, runtime_python, settings, q, procs, tmp_path)


def _walk_in_mode(mode: str, chromium: str, python: str, settings: Settings, q: YADTQ, procs: Procs,
                  tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    # The Redis walk's screenshots are the docs' (the README shows them); the API walk's stay with the test.
    shots = DOCS if mode == "redis" else tmp_path
    with _api(mode, settings, q) as api:
        _walk(expect, sync_playwright, chromium, python, q, procs, tmp_path, api, shots)
    log = (tmp_path / "streamlit.out").read_text()
    assert "Traceback" not in log and "deprecat" not in log.lower(), log[-3000:]
    for name in ("overview", "task", "workers", "failures", "workflows"):
        assert (shots / f"dashboard-{name}.png").stat().st_size > 20_000
    for name in ("queues", "schedules"):  # not in the docs (yet): kept with the test
        assert (tmp_path / f"dashboard-{name}.png").stat().st_size > 20_000


def _no_error(page: Any) -> None:
    """No exception box and no error message on the page (a read that failed shows one)."""
    assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id("stException").first.inner_text()


def _walk(expect: Any, sync_playwright: Any, chromium: str, python: str, q: YADTQ, procs: Procs, tmp_path: Path,
          api: str | None, shots: Path) -> None:
    procs.monitor()
    procs.worker("W1")
    procs.worker("W2")
    port = _start_dashboard(procs, tmp_path, python, api)
    procs.wait_assigned(["W1", "W2"])
    # More finished in the window than the per-type figures sample (search.DEFAULT_SAMPLE), so they say so.
    q.submit_many([("add", [i, 1]) for i in range(SAMPLE + 100)] + [("multiply", [i, 3]) for i in range(20)]
                  + [("sleep", [0.2]) for _ in range(10)] + [("divide", [i, 0]) for i in range(3)])
    bad = q.submit("fail", ["disk full on /var"], tries=1)
    later = q.submit("sleep", [1], countdown=3600)  # scheduled: the walk cancels it
    wf = q.submit_workflow({"type": "chain", "steps": [{"task": "add", "args": [1, 2]},
                                                       {"task": "multiply", "args": [10]}]})
    q.add_schedule("every-hour", "add", every=3600, args=[1, 2])
    wait_for(lambda: q.backend.counts()["queued"] + q.backend.counts()["processing"] == 0, 120, 0.2, "the tasks")
    q.wait(bad, 60)
    assert q.result(wf, 60) == 30
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100}, timezone_id="Europe/Paris")
        page.set_default_timeout(60_000)  # a click's navigation on a loaded machine (30 s was seen to run out)
        page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)

        # Overview: live counts, charts, per-type figures; no Deploy button.
        expect(page.get_by_text(f"Task types, last 15 minutes (a sample: the newest {SAMPLE:,} of")).to_be_visible(
            timeout=60_000)
        # Plotly's script is large: on a loaded machine the browser takes a while to draw the first charts.
        expect(page.locator(".js-plotly-plot")).to_have_count(7, timeout=90_000)
        # Then a load that keeps both workers busy while the Overview and Tasks pages are looked at, however slow
        # the machine: long tasks hold half the 16 slots, short ones flow through the rest; what is left of it is
        # cancelled once the screenshots are taken.
        load = q.submit_many([("sleep", [600]) for _ in range(LONG)] + [("sleep", [0.25]) for _ in range(LOAD)])
        processing = page.locator('[data-testid="stMetric"]').filter(has_text="Processing")
        expect(processing).to_contain_text(re.compile(r"Processing\s*[1-9]"), timeout=30_000)
        assert page.get_by_role("button", name="Deploy").count() == 0
        expect(page.get_by_text("API http://127.0.0.1:" if api else "· Redis redis://")).to_be_visible()
        _no_error(page)
        # Two more refreshes, so the charts carry a few samples; meanwhile the live panels update in place,
        # never greyed out while their next values are on the way (sampled every 100 ms).
        dimmed = [_dimmed(page) for _ in range(30) if not page.wait_for_timeout(100)]
        assert not any(dimmed), f"greyed out in {sum(map(bool, dimmed))} of {len(dimmed)} samples: {dimmed}"
        page.set_viewport_size({"width": 1600, "height": 1500})  # Streamlit scrolls inside: show the whole page
        page.wait_for_timeout(1000)
        assert q.backend.counts()["processing"] > 0, "the load ended before the screenshot"
        assert not _clipped(page), _clipped(page)
        page.screenshot(path=str(shots / "dashboard-overview.png"))
        page.set_viewport_size({"width": 1280, "height": 1100})  # a laptop: the metrics still read whole
        page.wait_for_timeout(500)
        assert not _clipped(page), _clipped(page)
        page.screenshot(path=str(tmp_path / "overview-1280.png"))
        page.set_viewport_size({"width": 1600, "height": 1100})

        # Tasks: search by error text, open the failed task, requeue it.
        page.get_by_role("link", name="Tasks").click()
        expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible(timeout=30_000)
        _settle(page)
        assert q.backend.counts()["processing"] > 0, "the load ended before the screenshot"
        page.screenshot(path=str(tmp_path / "tasks-under-load.png"))  # running tasks, their progress and times
        page.get_by_role("textbox", name="Error contains").fill("division")
        page.get_by_test_id("stBaseButton-primaryFormSubmit").filter(has_text="Search").click()
        expect(page.get_by_text(re.compile(r"Page 1: 3 task\(s\)"))).to_be_visible(timeout=30_000)
        _settle(page)
        page.screenshot(path=str(tmp_path / "tasks-errors.png"))  # ZeroDivisionError whole, times whole
        for tid in load[:LONG]:
            q.cancel(tid)
        page.get_by_role("textbox", name="Error contains").fill("disk FULL")
        page.get_by_test_id("stBaseButton-primaryFormSubmit").filter(has_text="Search").click()
        expect(page.get_by_text(re.compile(r"Page 1: 1 task\(s\)"))).to_be_visible(timeout=30_000)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_role("textbox", name="Task id").fill(bad)
        sidebar.get_by_role("button", name="Open task", exact=True).click()
        expect(page.get_by_text(f"Task {bad}: failed")).to_be_visible(timeout=30_000)
        expect(page.get_by_test_id("stCode").filter(has_text="RuntimeError: disk full on /var")).to_be_visible(
            timeout=30_000)
        _settle(page)
        page.set_viewport_size({"width": 1600, "height": 1500})
        page.get_by_text(f"Task {bad}: failed").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "dashboard-task.png"))
        page.set_viewport_size({"width": 1600, "height": 1100})
        page.get_by_role("button", name="Requeue", exact=True, disabled=False).click()
        expect(page.get_by_text("requeued (was failed)").first).to_be_visible(timeout=30_000)  # history and notice
        # Its new run waits behind what is left of the load in its partition.
        wait_for(lambda: len([e for _, e in q.backend.events(bad) if e.startswith("failed by")]) == 2, 120, 0.2,
                 "the requeued task to run again")
        _no_error(page)

        # Cancel a task that waits for its time (scheduled an hour ahead).
        sidebar.get_by_role("textbox", name="Task id").fill(later)
        sidebar.get_by_role("button", name="Open task", exact=True).click()
        expect(page.get_by_text(f"Task {later}: scheduled")).to_be_visible(timeout=30_000)
        # Until the run ends the failed task's (disabled) Cancel may still be on the page beside the new one.
        _settle(page)
        page.get_by_role("button", name="Cancel", exact=True, disabled=False).click()
        expect(page.get_by_text(f"Task {later}: cancelled")).to_be_visible(timeout=30_000)  # the notice may be gone
        assert q.status(later).status == "cancelled"

        # Workers and partitions: pause W1, see its tasks wait and why, resume it.
        page.get_by_role("link", name="Workers and partitions").click()
        expect(page.get_by_role("heading", name="Partitions", exact=True)).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Pause", exact=True).click()
        expect(page.get_by_text("Sent pause to W1")).to_be_visible(timeout=30_000)
        wait_for(lambda: q.live.workers()["W1"].get("state") == "paused", 30, 0.2, "W1 paused")
        held = q.submit_many([("sleep", [0.5]) for _ in range(24)])
        expect(page.get_by_text(re.compile(r"task\(s\) queued"))).to_be_visible(timeout=30_000)
        _settle(page)
        page.screenshot(path=str(shots / "dashboard-workers.png"))
        page.get_by_role("button", name="Resume", exact=True).click()
        expect(page.get_by_text("Sent resume to W1")).to_be_visible(timeout=30_000)
        wait_for(lambda: q.live.workers()["W1"].get("state") != "paused", 30, 0.2, "W1 resumed")
        _no_error(page)
        for tid in [*held, *load]:
            q.wait(tid, 120)

        # Failures: failed tasks, dead letters, worker deaths.
        page.get_by_role("link", name="Failures").click()
        expect(page.get_by_role("heading", name="Dead letters", exact=True)).to_be_visible(timeout=30_000)
        _settle(page)
        page.screenshot(path=str(shots / "dashboard-failures.png"))
        _no_error(page)

        # Queues and schedules: each a table.
        for name in ("Queues", "Schedules"):
            page.get_by_role("link", name=name).click()
            expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible(timeout=30_000)
            expect(page.get_by_test_id("stDataFrame")).to_be_visible(timeout=30_000)
            _settle(page)
            page.screenshot(path=str(tmp_path / f"dashboard-{name.lower()}.png"))
            _no_error(page)

        # Workflows: a chord inside a chain and a failed chord, listed; the first drawn with each step's state.
        flow = q.submit_workflow(chain(add.s(1, 1), chord([multiply.s(2), multiply.s(3)], total.s()), add.s(1)))
        broken = q.submit_workflow(chord([add.s(1, 1), q.signature("fail", ["no disk"], tries=1)], total.s()))
        assert q.result(flow, timeout=60) == 11.0 and q.wait(broken, 60).status == "failed"
        page.get_by_role("link", name="Workflows").click()
        expect(page.get_by_role("heading", name="Workflows", exact=True)).to_be_visible(timeout=30_000)
        page.get_by_role("textbox", name="Workflow id").fill(flow)
        page.get_by_role("textbox", name="Workflow id").press("Enter")
        expect(page.get_by_role("heading", name="success: 11.0")).to_be_visible(timeout=30_000)
        expect(page.locator(".js-plotly-plot")).to_have_count(1, timeout=30_000)
        graph = page.locator(".js-plotly-plot").inner_text()
        assert all(step in graph for step in ("chain", "chord", "group", "multiply", "total")), graph
        assert _marker_fills(page) == [GREEN] * 8  # chain, add, chord, group, 2 multiply, total, add: success
        table = page.locator('[data-testid="stDataFrame"]')  # the list, then this one's nodes (canvas-drawn)
        expect(table).to_have_count(2, timeout=30_000)
        _settle(page)
        page.set_viewport_size({"width": 1600, "height": 1500})
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "dashboard-workflows.png"))
        page.get_by_role("textbox", name="Workflow id").fill(broken)
        page.get_by_role("textbox", name="Workflow id").press("Enter")
        expect(page.get_by_role("heading", name="failed", exact=True)).to_be_visible(timeout=30_000)
        expect(page.get_by_role("alert")).to_contain_text("fail (" + broken + ".3) failed: RuntimeError: no disk")
        # chord, group, add done, fail failed, total never started
        wait_for(lambda: sorted(_marker_fills(page)) == sorted([BLUE, BLUE, GREEN, RED, GREY]), 30, 0.2,
                 "the failed chord's states drawn")
        _no_error(page)
        browser.close()

"""The running dashboard of a running system, driven in headless Chromium through every page.

It searches, opens a task, requeues it, pauses and resumes a worker, and keeps
a screenshot of each page in docs/ (the README shows them).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Procs, wait_for

from yadtq.client.client import YADTQ
from yadtq.ops.ports import answers, free_port
from yadtq.task.builtins import add, multiply, total
from yadtq.task.canvas import chain, chord

CHROMIUM = "/usr/bin/chromium"
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


def _start_dashboard(procs: Procs, tmp_path: Path) -> int:
    port = free_port()
    env = procs.env()
    env["YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE"] = "true"
    env["YADTQ_DASHBOARD_REFRESH"] = "1.5"
    with open(tmp_path / "streamlit.out", "w") as log:
        app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                                "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless",
                                "true", "--browser.gatherUsageStats", "false"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=ROOT)  # as the Procfile runs it: .streamlit/config.toml applies
    procs.procs["streamlit"] = app  # killed at teardown with the rest
    wait_for(lambda: answers("127.0.0.1", port), 60, 0.2, "streamlit to listen")
    return port


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


@pytest.mark.browser
def test_walk_every_page(chromium: str, settings, q: YADTQ, procs: Procs, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    procs.monitor()
    procs.worker("W1")
    procs.worker("W2")
    port = _start_dashboard(procs, tmp_path)
    procs.wait_assigned(["W1", "W2"])
    ids = q.submit_many([("add", [i, 1]) for i in range(40)] + [("multiply", [i, 3]) for i in range(20)]
                        + [("sleep", [0.2]) for _ in range(10)])
    bad = q.submit("fail", ["disk full on /var"], tries=1)
    for tid in [*ids, bad]:
        q.wait(tid, 60)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100}, timezone_id="Europe/Paris")
        page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)

        # Overview: live counts, charts, per-type figures; no Deploy button.
        success = page.locator('[data-testid="stMetric"]').filter(has_text="Success")
        expect(success).to_contain_text("70", timeout=60_000)
        expect(page.get_by_text("Task types, last 15 minutes")).to_be_visible()
        expect(page.locator(".js-plotly-plot")).to_have_count(7, timeout=30_000)
        assert page.get_by_role("button", name="Deploy").count() == 0
        # Two more refreshes, so the charts carry a few samples; meanwhile the live panels update in place,
        # never greyed out while their next values are on the way (sampled every 100 ms).
        dimmed = [_dimmed(page) for _ in range(30) if not page.wait_for_timeout(100)]
        assert not any(dimmed), f"greyed out in {sum(map(bool, dimmed))} of {len(dimmed)} samples: {dimmed}"
        page.set_viewport_size({"width": 1600, "height": 1500})  # Streamlit scrolls inside: show the whole page
        page.wait_for_timeout(1000)
        page.screenshot(path=str(DOCS / "dashboard-overview.png"))
        page.set_viewport_size({"width": 1600, "height": 1100})

        # Tasks: search by error text, open the failed task, requeue it.
        page.get_by_role("link", name="Tasks").click()
        expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible(timeout=30_000)
        page.get_by_role("textbox", name="Error contains").fill("disk FULL")
        page.get_by_test_id("stBaseButton-primaryFormSubmit").filter(has_text="Search").click()
        expect(page.get_by_text(re.compile(r"Page 1: 1 task\(s\)"))).to_be_visible(timeout=30_000)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_role("textbox", name="Task id").fill(bad)
        sidebar.get_by_role("button", name="Open task", exact=True).click()
        expect(page.get_by_text(f"Task {bad}: failed")).to_be_visible(timeout=30_000)
        expect(page.get_by_test_id("stCode").filter(has_text="RuntimeError: disk full on /var")).to_be_visible()
        _settle(page)
        page.set_viewport_size({"width": 1600, "height": 1500})
        page.get_by_text(f"Task {bad}: failed").scroll_into_view_if_needed()
        page.screenshot(path=str(DOCS / "dashboard-task.png"))
        page.set_viewport_size({"width": 1600, "height": 1100})
        page.get_by_role("button", name="Requeue", exact=True).click()
        wait_for(lambda: len([e for _, e in q.backend.events(bad) if e.startswith("failed by")]) == 2, 60, 0.2,
                 "the requeued task to run again")
        expect(page.get_by_text("requeued (was failed)").first).to_be_visible(timeout=30_000)  # history and notice

        # Workers and partitions: pause W1, see its tasks wait and why, resume it.
        page.get_by_role("link", name="Workers and partitions").click()
        expect(page.get_by_role("heading", name="Partitions", exact=True)).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Pause", exact=True).click()
        expect(page.get_by_text("Sent pause to W1")).to_be_visible(timeout=30_000)
        wait_for(lambda: q.live.workers()["W1"].get("state") == "paused", 30, 0.2, "W1 paused")
        held = q.submit_many([("sleep", [0.5]) for _ in range(24)])
        expect(page.get_by_text(re.compile(r"task\(s\) queued"))).to_be_visible(timeout=30_000)
        _settle(page)
        page.screenshot(path=str(DOCS / "dashboard-workers.png"))
        page.get_by_role("button", name="Resume", exact=True).click()
        expect(page.get_by_text("Sent resume to W1")).to_be_visible(timeout=30_000)
        wait_for(lambda: q.live.workers()["W1"].get("state") != "paused", 30, 0.2, "W1 resumed")
        for tid in held:
            q.wait(tid, 60)

        # Failures: failed tasks, dead letters, worker deaths.
        page.get_by_role("link", name="Failures").click()
        expect(page.get_by_role("heading", name="Dead letters", exact=True)).to_be_visible(timeout=30_000)
        _settle(page)
        page.screenshot(path=str(DOCS / "dashboard-failures.png"))

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
        page.screenshot(path=str(DOCS / "dashboard-workflows.png"))
        page.get_by_role("textbox", name="Workflow id").fill(broken)
        page.get_by_role("textbox", name="Workflow id").press("Enter")
        expect(page.get_by_role("heading", name="failed", exact=True)).to_be_visible(timeout=30_000)
        expect(page.get_by_role("alert")).to_contain_text("fail (" + broken + ".3) failed: RuntimeError: no disk")
        # chord, group, add done, fail failed, total never started
        wait_for(lambda: sorted(_marker_fills(page)) == sorted([BLUE, BLUE, GREEN, RED, GREY]), 30, 0.2,
                 "the failed chord's states drawn")
        browser.close()
    log = (tmp_path / "streamlit.out").read_text()
    assert "Traceback" not in log and "deprecat" not in log.lower(), log[-3000:]
    for name in ("overview", "task", "workers", "failures", "workflows"):
        assert (DOCS / f"dashboard-{name}.png").stat().st_size > 20_000

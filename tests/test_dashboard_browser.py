"""The running dashboard of a running system, driven in headless Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, Procs, wait_for
from yadtq.client import YADTQ
from yadtq.services import answers, free_port

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
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


@pytest.mark.browser
def test_submit_in_the_browser_and_watch_it_succeed(chromium: str, settings, q: YADTQ, procs: Procs,
                                                   tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    procs.monitor()
    procs.worker("W1")
    procs.worker("W2")
    port = free_port()
    env = procs.env()
    log = open(tmp_path / "streamlit.out", "w")
    app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                            "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                            "--browser.gatherUsageStats", "false"], env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    procs.procs["streamlit"] = app  # killed at teardown with the rest
    wait_for(lambda: answers("127.0.0.1", port), 60, 0.2, "streamlit to listen")
    q.submit_many([("add", [i, 1]) for i in range(30)] + [("fail", ["shown in the failed tab"])])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1250})
        page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
        expect(page.get_by_text("Submit a task")).to_be_visible(timeout=60_000)
        args = page.get_by_role("textbox", name="Arguments")
        args.fill("19 23")
        page.get_by_role("button", name="Submit", exact=True).click()
        notice = page.get_by_text(re.compile(r"Submitted [0-9a-f-]{36}"))
        expect(notice).to_be_visible(timeout=30_000)
        tid = re.search(r"[0-9a-f-]{36}", notice.inner_text()).group(0)
        # The live panel refreshes on its own: the success count reaches 31 without a reload.
        success = page.locator('[data-testid="stMetric"]').filter(has_text="Success")
        expect(success).to_contain_text("31", timeout=30_000)
        assert q.result(tid, timeout=30) == 42
        expect(page.locator(".js-plotly-plot")).to_have_count(3, timeout=30_000)
        page.wait_for_timeout(2500)  # one more refresh, so the charts carry a few samples
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        # The form put the new id in the lookup box; its panel follows the task live.
        expect(page.get_by_role("textbox", name="Task id")).to_have_value(tid)
        expect(page.get_by_text(f"Task {tid}: success")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-lookup.png"))
        browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000

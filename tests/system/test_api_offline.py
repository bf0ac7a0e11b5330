"""The API's own pages without internet, and `yadtq api` beside a running API (issue 20, item 4).

Swagger UI (/docs) and ReDoc (/redoc) are loaded in headless Chromium with every
request to anywhere but this machine aborted: each page must render the
operations from scripts the API serves itself, and ask nothing of the outside.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import run_cli
from test_dashboard_browser import FLAGS, chromium  # noqa: F401  (the fixture that installs Debian's chromium)

from yadtq.config import Settings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _offline_page(browser: Any, blocked: list[str]) -> Any:
    """A page whose every request off this machine is aborted (and noted in `blocked`)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    def only_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", only_local)
    return page


@pytest.mark.browser
def test_docs_and_redoc_render_offline(chromium: str, api: httpx.Client, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    base = str(api.base_url).rstrip("/")
    operations = len([op for path in api.get("/openapi.json").json()["paths"].values() for op in path])
    assert operations >= 15
    page_errors: list[str] = []  # uncaught script errors, and console errors (a CSP refusal is one)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
        blocked: list[str] = []
        page = _offline_page(browser, blocked)
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.on("console", lambda msg: page_errors.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{base}/docs", timeout=60_000)
        # Swagger UI draws one .opblock per operation once its bundle ran and read /openapi.json.
        expect(page.locator(".opblock")).to_have_count(operations, timeout=60_000)
        expect(page.locator(".opblock-summary-path", has_text="/tasks/{task_id}/cancel")).to_be_visible()
        page.screenshot(path=str(tmp_path / "docs.png"))

        redoc = _offline_page(browser, blocked)
        redoc.on("pageerror", lambda exc: page_errors.append(str(exc)))
        redoc.on("console", lambda msg: page_errors.append(msg.text) if msg.type == "error" else None)
        redoc.goto(f"{base}/redoc", timeout=60_000)
        # ReDoc gives each operation a section in the menu and one in the body.
        expect(redoc.locator('[data-section-id^="operation/"]')).to_have_count(operations, timeout=60_000)
        expect(redoc.get_by_role("heading", name="Submit one task")).to_be_visible()
        redoc.screenshot(path=str(tmp_path / "redoc.png"))
        browser.close()
    assert blocked == [], f"the pages asked for outside resources: {blocked}"
    # The one thing the policy refuses: ReDoc's footer logo, which its bundle always loads from its vendor.
    refused = [e for e in page_errors if "Content Security Policy" in e]
    assert all("cdn.redoc.ly/redoc/logo-mini.svg" in e for e in refused), refused
    assert [e for e in page_errors if e not in refused] == []
    assets = api.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in assets and "cdn." not in assets
    assert "/docs-assets/redoc.standalone.js" in api.get("/redoc").text


def test_yadtq_api_beside_a_running_api_says_where_it_is(settings: Settings, api: httpx.Client) -> None:
    port = api.base_url.port
    done = run_cli(settings, "api", "--address", f"127.0.0.1:{port}", timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 3, done.stdout + done.stderr
    assert lines == [f"yadtq: error: a YADTQ API is already running at http://127.0.0.1:{port} "
                     f"(OpenAPI at http://127.0.0.1:{port}/docs); use it, or start another with --address HOST:PORT"]


def test_yadtq_api_on_a_port_another_program_holds(settings: Settings) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # listens, but answers no HTTP
        port = taken.getsockname()[1]
        done = run_cli(settings, "api", "--address", f"0.0.0.0:{port}", timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 3, out
    assert len(out.splitlines()) == 1, out
    assert f"127.0.0.1:{port} is taken by another program (not a YADTQ API)" in out
    assert "Errno" not in out and "Traceback" not in out

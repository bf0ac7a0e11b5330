"""The benchmark code must not rot: its quickest path runs here (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_bench_quick_transport_and_dashboard_run() -> None:
    out = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "transport", "dashboard"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "transport: ceiling" in out.stdout and "dashboard refresh, 100,000 records" in out.stdout

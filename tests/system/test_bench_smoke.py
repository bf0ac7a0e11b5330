"""The benchmark code must not rot: `bench/run.py --quick` runs here, Celery included.

Figures are never asserted against speed targets; what is checked is that every
benchmark produced its figures and the table shows them (~1 minute on 2 cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def test_bench_quick_mode_measures_and_prints_every_table_section(tmp_path: Path) -> None:
    results = tmp_path / "quick.json"
    out = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "mixed", "scale", "latency",
                          "transport", "dashboard", "--out", str(results)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(results.read_text())

    # The quick mixed workload: 100 tasks, 10 naps of 0.2 s and 3 of 1 s = 5 s of sleep on 2 slots.
    # No run can beat the ideal: a makespan below it would mean a clock read at the wrong moment.
    for fig in (data["yadtq"]["embedded"]["mixed"]["2 slots"]["YADTQ 1x2"],
                data["celery"]["mixed"]["2 slots"]["Celery prefork 2"]):
        assert fig["ideal_s"] == pytest.approx(2.5)
        assert fig["makespan_s"] >= fig["ideal_s"]
        assert 0 < fig["quick_p50_s"] <= fig["quick_p99_s"] <= fig["makespan_s"]
        # The 2 failing tasks: each retried once, measured from its first failure to its success.
        assert 0 < fig["retry_wait_p50_s"] <= fig["retry_wait_max_s"] <= fig["makespan_s"]
    assert data["yadtq"]["embedded"]["mixed"]["2 slots"]["YADTQ 1x2"]["workers_serving"] == 1
    for side in (data["yadtq"]["embedded"]["scale"], data["celery"]["scale"]):
        assert set(side) == {"1", "2"}
        assert all(cell["end_to_end_per_s"]["median"] > 0 for cell in side.values())
    assert data["yadtq"]["embedded"]["latency"]["p99_ms"]["median"] > 0
    assert data["celery"]["latency"]["p99_ms"]["median"] > 0
    assert all(isinstance(cell["load"]["median"], float) for cell in data["yadtq"]["embedded"]["scale"].values())

    assert "ERRORS" not in out.stdout
    for line in ("mixed 2 slots: makespan, YADTQ 1x2", "mixed 2 slots: quick p50 / p99, YADTQ 1x2",
                 "mixed 2 slots: failure to retried success p50 / max, YADTQ 1x2",
                 "add end to end, 2 workers", "latency p99 at 100 tasks/s", "Kafka alone: ceiling",
                 "dashboard refresh, 20,000 records"):
        assert line in out.stdout, out.stdout

    # A saved result prints again as Markdown (how the README's table is made), without running anything.
    shown = subprocess.run([sys.executable, "bench/run.py", "--show", str(results), "--markdown"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert shown.stdout.startswith("| benchmark | YADTQ embedded | Celery | YADTQ/Celery | target | met | load |")
    assert "| add end to end, 2 workers |" in shown.stdout

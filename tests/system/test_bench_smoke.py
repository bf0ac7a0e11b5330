"""The benchmark code must not rot: `bench/run.py --quick` runs here, Celery and the peers (Dramatiq, arq) included.

Figures are never asserted against speed targets; what is checked is that every
benchmark produced its figures and the table shows them (~2 minutes on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from bench.scaling import BOUNDS


def install_peers() -> None:
    """Dramatiq is pinned in bench/requirements.txt, which only `make bench` installs: installed here when
    missing. (arq makes its own venv, .venv-arq, the first time the benchmark needs it.)"""
    if importlib.util.find_spec("dramatiq") is None:
        uv = Path(sys.executable).parent / "uv"  # as the Makefile installs
        installer = [str(uv), "pip", "install", "-q", "--python", sys.executable] if uv.exists() \
            else [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*installer, "-r", "bench/requirements.txt"], cwd=ROOT, check=True, timeout=600)


@pytest.mark.timeout(600)  # the peers add about a minute on a loaded machine
def test_bench_quick_mode_measures_and_prints_every_table_section(tmp_path: Path) -> None:
    install_peers()
    results = tmp_path / "quick.json"
    out = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "mixed", "scale", "scaling", "latency",
                          "transport", "dashboard", "cluster", "--out", str(results)],
                         cwd=ROOT, capture_output=True, text=True, timeout=480)
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
    # Scaling's one quick cell, 2 processes x concurrency 4: every process type's CPU read, a bound computed.
    scaling_cell = data["yadtq"]["embedded"]["scaling"]["2"]["4"]
    assert scaling_cell["end_to_end_per_s"] > 0 and scaling_cell["workers_serving"] == 2
    cpu = scaling_cell["cpu_us_per_task"]
    assert cpu["workers"] > 0 and cpu["all"] > cpu["workers"]
    assert scaling_cell["bound_by"] in BOUNDS
    assert data["celery"]["latency"]["p99_ms"]["median"] > 0
    assert all(isinstance(cell["load"]["median"], float) for cell in data["yadtq"]["embedded"]["scale"].values())

    # The peers: 300 tasks each on 2 worker processes, on both Redis settings, YADTQ too.
    assert data["yadtq"]["embedded"]["scale_no_persistence"]["2"]["end_to_end_per_s"]["median"] > 0
    assert set(data["peers"]) == {"dramatiq", "arq poll 0.5", "arq poll 0.05"}
    for peer in data["peers"].values():
        assert peer["tasks"] == 300
        for setting in ("fsync_always", "no_persistence"):
            assert peer[setting]["end_to_end_per_s"]["median"] > 0, peer
            assert isinstance(peer[setting]["load"]["median"], float)

    # One Redis and the 3-primary cluster, one quick round each (300 tasks, the store alone for 1 s).
    cluster = data["yadtq"]["embedded"]["cluster"]
    assert cluster["tasks"] == 300 and cluster["primaries"] == 3
    for setup in ("one", "cluster"):
        assert cluster[f"{setup}_end_to_end_per_s"]["median"] > 0 and cluster[f"{setup}_store_per_s"]["median"] > 0

    assert "ERRORS" not in out.stdout
    for line in ("mixed 2 slots: makespan, YADTQ 1x2", "mixed 2 slots: quick p50 / p99, YADTQ 1x2",
                 "mixed 2 slots: failure to retried success p50 / max, YADTQ 1x2",
                 "add end to end, 2 workers", "scaling 2 x 4: tasks/s (bound by)",
                 "latency p99 at 100 tasks/s", "Kafka alone: ceiling",
                 "Dramatiq 2.2.1 (2 processes x 8 threads, 300 tasks): both fsync always",
                 "Dramatiq 2.2.1 (2 processes x 8 threads, 300 tasks): YADTQ fsync always, peer no persistence",
                 "arq 0.28.0 (2 processes, poll 0.5 s, its default, 300 tasks): both no persistence",
                 "arq 0.28.0 (2 processes, poll 0.05 s, 300 tasks): both fsync always",
                 "dashboard refresh, 20,000 records", "`add` end to end, 2 workers: Redis Cluster",
                 "store alone (submit + claim + outcome, no broker): one Redis"):
        assert line in out.stdout, out.stdout

    # A saved result prints again as Markdown (how the README's table is made), without running anything.
    shown = subprocess.run([sys.executable, "bench/run.py", "--show", str(results), "--markdown"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert shown.stdout.startswith("| benchmark | YADTQ embedded | Celery | peer | YADTQ/other | target | met | load |")
    assert "| add end to end, 2 workers |" in shown.stdout


def test_hot_path_times_every_path() -> None:
    # bench/hot_path.py is not part of `make bench`; a few tasks show it still runs and prints every row.
    out = subprocess.run([sys.executable, "bench/hot_path.py", "--tasks", "64"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.rsplit(None, 2)[0] for line in out.stdout.splitlines() if line.endswith(" µs/task")]
    assert rows == ["worker: triage (decode, check, digest)", "worker: three event lines",
                    "worker: the claim's JSON of args, kwargs", "worker: tracing policy around a run",
                    "worker: the rest of a step's command", "worker: a step's command packed",
                    "client: check, message, encoding, digest", "in all"], out.stdout
    assert "(the step packed by redis-py itself)" in out.stdout

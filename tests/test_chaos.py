"""Chaos: 2,000 tasks, 4 workers + 1 standby, a random worker killed with
kill -9 every ~2 s and respawned. Nothing lost, nothing completed twice."""

from __future__ import annotations

import os

import pytest

from conftest import ROOT
from worker_farm.chaos import run_chaos, write_report
from yadtq.config import Settings


def test_chaos_kill9_every_two_seconds(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    # Short session and lease: a kill every 2 s must not leave the group stalled.
    s = settings.replace(partitions=8, lease=3.0, session_timeout_ms=3000, heartbeat_interval_ms=500)
    lines: list[str] = []
    report = run_chaos(s, tasks=2000, workers=4, standby=1, kill_every=2.0, max_minutes=4, seed=3,
                        pause=0.02, say=lines.append)
    write_report(report, tmp_path / "chaos")
    print(report.summary())
    assert report.kills >= 5, (report.summary(), lines[-20:])
    assert report.lost == 0, report.summary()
    assert report.run_twice_after_completion == 0, report.summary()
    assert report.unexplained_reruns == 0, report.summary()
    assert report.reruns_after_midrun_kill <= report.kills
    assert report.counts_add_up
    assert (tmp_path / "chaos" / "ledger.csv").read_text().count("\n") == len(report.ledger) + 1

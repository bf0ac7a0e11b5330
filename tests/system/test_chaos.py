"""Chaos: 1,200 tasks of mixed durations, 4 workers + 1 standby at concurrency 4,
a random worker killed with kill -9 every ~2 s and respawned. Nothing lost,
nothing run twice unless its run was cut off by a kill."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ROOT, wait_for

from worker_farm.chaos import SUMMARY_KEYS, run_chaos, write_report
from yadtq.config import Settings


@pytest.mark.serial
@pytest.mark.timeout(420)
def test_chaos_kill9_every_two_seconds(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    # Short session and lease: with a kill every 2 s the group must settle
    # quickly, and a killed worker's claims must lapse quickly. The session is the suite's
    # (conftest: 1.5 s on the embedded broker, whose joins wait two thirds of it; 3 s on Kafka).
    # Concurrency 4 and a mixed workload (mostly quick, some 0.2 s and 0.5 s tasks):
    # a kill cuts off up to 4 runs at once.
    s = settings.replace(partitions=8, lease=3.0, heartbeat_interval_ms=500, concurrency=4)
    lines: list[str] = []
    report = run_chaos(s, tasks=1200, workers=4, standby=1, kill_every=2.0, max_minutes=4, drain_minutes=1,
                       seed=3, pause=0.004, say=lines.append, pauses=[0.002] * 17 + [0.2, 0.2, 0.5])
    notes = write_report(report, tmp_path / "chaos", s)
    figures = {**report.summary(), "counts": report.counts, "notes": notes,
               "wrongly_quarantined": report.wrongly_quarantined}
    print(figures)
    assert report.kills >= 5, (figures, lines[-20:])
    assert report.lost == 0, figures
    assert report.run_twice_after_completion == 0, (figures, report.unexplained[:10])
    assert report.reruns_after_midrun_kill <= report.kills * s.concurrency, figures
    assert report.counts_add_up and report.counts["success"] == 1200, figures
    assert len({tid for tid, _, _ in report.ledger}) == 1200  # every task ran, and left its trace
    # The farm reported every kill as a crash and respawned the worker.
    assert sum("crashed: killed by signal 9" in line for line in lines) >= report.kills - 1, lines[-20:]
    assert any("[farm] respawned worker" in line for line in lines)
    # The notebook's input.
    out = tmp_path / "chaos"
    assert tuple(json.loads((out / "summary.json").read_text())) == SUMMARY_KEYS
    assert (out / "ledger.csv").read_text().count("\n") == len(report.ledger) + 1
    assert (out / "kills.csv").read_text().count("\n") == report.kills + 1
    kept = {p.name for p in (out / "logs").iterdir()}
    for n in ("S1", "W1", "W2", "W3", "W4"):  # each worker's events (the notebook's input) and log
        assert {f"worker-{n}.events.jsonl", f"worker-{n}.log"} <= kept, sorted(kept)


def test_a_partition_kept_across_a_rebalance_loses_no_polled_task(settings: Settings, q, procs) -> None:
    """W1 has polled a backlog; W2 joins; W1 keeps half of its partitions.
    kafka-python keeps a kept partition's fetch position, past the records W1
    dropped at revoke: they must still run (the worker seeks back to them)."""
    procs.worker("W1")
    procs.wait_assigned(["W1"])
    ids = q.submit_many([("sleep", [0.05]) for _ in range(200)])
    wait_for(lambda: q.backend.counts()["success"] >= 20, 30, 0.1, "W1 to be working through its backlog")
    procs.worker("W2")
    wait_for(lambda: (procs.assigned("W2") or []) != [], 40, 0.2, "W2 to get partitions")
    kept = procs.assigned("W1")
    assert kept, "W1 should keep some partitions (sticky assignment)"
    wait_for(lambda: q.backend.counts()["success"] == 200, 60, 0.2, f"all 200 tasks to succeed (W1 kept {kept})")
    assert {rec.status for rec in q.backend.get_many(ids)} == {"success"}

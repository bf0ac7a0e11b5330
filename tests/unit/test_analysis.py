"""notebooks.analysis on small frames built here: each shaping function's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from notebooks import analysis as A


def ev(ts: float, event: str, process: str = "worker-W1", pid: int = 100, **kw: object) -> dict:
    return {"ts": ts, "event": event, "process": process, "pid": pid, **kw}


def tasks_frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"task_id": "a", "task": "add", "status": "success", "worker": "W1", "attempts": 1,
         "submitted": 10.0, "started": 11.0, "finished": 11.5},
        {"task_id": "b", "task": "add", "status": "success", "worker": "W2", "attempts": 1,
         "submitted": 10.0, "started": 13.0, "finished": 14.5},
        {"task_id": "c", "task": "fail", "status": "failed", "worker": "W2", "attempts": 3,
         "submitted": 10.0, "started": 20.0, "finished": 20.25},
        {"task_id": "d", "task": "add", "status": "queued", "worker": None, "attempts": 0,
         "submitted": 10.0, "started": np.nan, "finished": np.nan},
    ])


def test_read_events_recovers_the_event_after_a_torn_line() -> None:
    lines = ['{"ts":1,"event":"connected","process":"p","pid":1}\n',
             '{"ts":2,"event":"task_sta{"ts":3,"event":"worker_joined","process":"p","pid":2}\n',
             'garbage\n', '\n']
    events, bad = A.read_events(lines)
    assert [e["event"] for e in events] == ["connected", "worker_joined"]
    assert bad == 1


def test_load_events_merges_files_in_time_order(tmp_path: Path) -> None:
    (tmp_path / "worker-W1.events.jsonl").write_text(json.dumps(ev(2, "task_started")) + "\n")
    (tmp_path / "monitor.events.jsonl").write_text(json.dumps(ev(1, "worker_alive", "monitor", worker="W1")) + "\n")
    df = A.load_events(tmp_path)
    assert list(df["event"]) == ["worker_alive", "task_started"]
    assert set(A.EVENT_COLUMNS) <= set(df.columns) and df["time"].iloc[0] == pd.Timestamp("1970-01-01 00:00:01")
    with pytest.raises(FileNotFoundError):
        A.load_events(tmp_path / "nowhere")


def test_latency_table_splits_queue_wait_and_run_time_per_task_type() -> None:
    table = A.latency_table(tasks_frame()).set_index(["task", "metric"])
    assert table.loc[("add", "queue_wait"), "count"] == 2
    assert table.loc[("add", "queue_wait"), "p50"] == pytest.approx(2.0)  # waits 1 and 3
    assert table.loc[("add", "queue_wait"), "p90"] == pytest.approx(1 + 0.9 * 2)
    assert table.loc[("add", "run_time"), "max"] == pytest.approx(1.5)
    assert table.loc[("fail", "run_time"), "mean"] == pytest.approx(0.25)
    assert "d" not in A.task_latencies(tasks_frame()).dropna(subset=["run_time"])["task_id"].values


def test_worker_counts_count_final_outcomes_per_worker() -> None:
    counts = A.worker_counts(tasks_frame())
    assert counts.to_dict("index") == {"W1": {"success": 1, "failed": 0, "total": 1},
                                       "W2": {"success": 1, "failed": 1, "total": 2}}


def test_throughput_bins_fill_empty_intervals() -> None:
    df = pd.DataFrame({"finished": [0.1, 0.2, 2.5, 2.9], "worker": ["W1", "W2", "W1", "W1"]})
    overall = A.throughput(df, 1.0)
    assert list(overall["count"]) == [2, 0, 2]
    per = A.throughput(df, 1.0, by="worker")
    assert per.to_dict("list") == {"W1": [1, 0, 2], "W2": [1, 0, 0]}
    assert overall.index[0] == pd.Timestamp(0, unit="s")


def test_failure_and_attempts_tables() -> None:
    events = A.events_frame([
        ev(1, "task_retried", task="flaky", error="RuntimeError: x"),
        ev(2, "task_retried", task="flaky", error="RuntimeError: x"),
        ev(3, "task_failed", task="fail", error="RuntimeError: y"),
        ev(4, "task_rejected", error="not JSON"),
        ev(5, "task_succeeded", task="add"),
    ])
    table = A.failure_table(events)
    assert table.iloc[0][["task", "task_retried", "total"]].tolist() == ["flaky", 2, 2]
    assert table.set_index("task").loc["(unreadable)", "task_rejected"] == 1
    att = A.attempts_table(tasks_frame()).set_index("task")
    assert att.loc["fail"].tolist() == [1, 1, 1, 3.0]
    assert att.loc["add", "tasks"] == 3 and att.loc["add", "retried"] == 0


def test_gantt_rows_pair_attempts_and_mark_cut_off_runs() -> None:
    events = A.events_frame([
        ev(1, "task_started", task_id="a", task="add", attempt=1, worker="W1", partition=0),
        ev(2, "task_retried", task_id="a", task="add", attempt=1, worker="W1"),
        ev(3, "task_started", task_id="a", task="add", attempt=2, worker="W1", partition=0),
        ev(4, "task_succeeded", task_id="a", task="add", attempt=2, worker="W1"),
        ev(5, "task_started", task_id="b", task="add", attempt=1, worker="W1", partition=1),
        ev(6, "connected", worker="W1"),  # the last thing the killed process wrote
        ev(9, "worker_died", "monitor", pid=100, worker="W1"),  # carries the dead worker's pid
        ev(10, "task_started", task_id="b", task="add", attempt=2, worker="W2", pid=200, partition=1),
        ev(11, "task_succeeded", task_id="b", task="add", attempt=2, worker="W2", pid=200),
    ])
    rows = A.gantt_rows(events)
    assert rows[["task_id", "attempt", "start", "finish", "outcome"]].values.tolist() == [
        ["a", 1, 1, 2, "retried"], ["a", 2, 3, 4, "succeeded"],
        ["b", 1, 5, 6, "cut off"], ["b", 2, 10, 11, "succeeded"]]


def test_heartbeat_gaps_per_worker() -> None:
    hb = pd.DataFrame({"worker": ["W1", "W2", "W1", "W1", "W2"], "ts": [0.0, 0.5, 1.0, 5.0, 1.5]})
    gaps = A.heartbeat_gaps(hb)
    assert gaps[gaps["worker"] == "W1"]["gap"].tolist() == [1.0, 4.0]
    summary = A.heartbeat_summary(hb, interval=1.0).set_index("worker")
    assert summary.loc["W1"].tolist() == [3, 2.5, 4.0, 1]
    assert summary.loc["W2", "late"] == 0


def test_chaos_reexecutions_recovery_and_verdict(tmp_path: Path) -> None:
    kills = pd.DataFrame({"ts": [10.0], "worker": ["W1"], "pid": [100]})
    ledger = pd.DataFrame({"task_id": ["a", "b", "b", "c", "c"], "pid": [100, 100, 200, 300, 200],
                           "attempt": [1, 1, 2, 1, 2]})
    again = A.reexecutions(ledger, kills).set_index("task_id")
    assert again["runs"].to_dict() == {"b": 2, "c": 2}
    assert again["explained"].to_dict() == {"b": True, "c": False}  # pid 300 was never killed

    events = A.events_frame([
        ev(1, "partitions_assigned", worker="W1", partitions=[0, 1]),
        ev(1, "partitions_assigned", worker="W2", pid=200, partitions=[2, 3]),
        ev(9, "task_succeeded", worker="W1", partition=0, task_id="x"),
        ev(13, "partitions_assigned", worker="W2", pid=200, partitions=[0, 1, 2, 3]),
        ev(12, "task_succeeded", worker="W2", pid=200, partition=2, task_id="y"),  # not W1's partition
        ev(14.5, "task_succeeded", worker="W2", pid=200, partition=1, task_id="z"),
    ])
    rec = A.recovery_times(kills, events).iloc[0]
    assert rec["partitions"] == [0, 1]
    assert rec["reassigned_s"] == pytest.approx(3.0) and rec["recovery_s"] == pytest.approx(4.5)

    (tmp_path / "summary.json").write_text(json.dumps({"tasks": 3, "kills": 1, "lost": 0,
                                                       "run_twice_after_completion": 1}))
    kills.to_csv(tmp_path / "kills.csv", index=False)
    ledger.to_csv(tmp_path / "ledger.csv", index=False)
    run = A.load_chaos(tmp_path)
    assert run.export is None and run.events is None and run.ledger["run"].tolist() == [1, 1, 2, 1, 2]
    verdict = A.chaos_verdict(run).set_index("check")
    assert not verdict.loc["re-runs whose earlier run was not killed (ledger)", "ok"]
    assert verdict.loc["lost (summary.json)", "ok"]


def test_recovery_of_a_standby_kill_is_empty() -> None:
    kills = pd.DataFrame({"ts": [5.0], "worker": ["S1"], "pid": [300]})
    events = A.events_frame([ev(1, "partitions_assigned", worker="S1", pid=300, partitions=[]),
                             ev(6, "task_succeeded", worker="W2", pid=200, partition=0)])
    rec = A.recovery_times(kills, events).iloc[0]
    assert rec["partitions"] == [] and np.isnan(rec["recovery_s"]) and np.isnan(rec["reassigned_s"])

"""Both notebooks, executed top to bottom with nbclient against a real run.

The run: 2 worker subprocesses and a monitor, ~200 tasks (ledger, add,
flaky, fail), one worker killed with kill -9 mid-stream. Then `yadtq
export`, a chaos-format directory from the same run, and the notebooks. Their
key tables must equal what this test computes from Redis directly.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import redis
from conftest import ROOT, Procs, run_cli, wait_for
from ledger_tasks import read_ledger
from nbclient import NotebookClient

from yadtq.client.client import YADTQ
from yadtq.config import Settings

NOTEBOOKS = ROOT / "notebooks"
QS = (50, 90, 95, 99)


def python_kernel(base: Path) -> dict[str, str]:
    """Env vars making kernel `python3` this interpreter (the venv's), whatever else is installed."""
    spec = base / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    return {"JUPYTER_PATH": str(base / "jupyter"), "JUPYTER_RUNTIME_DIR": str(base / "runtime")}


def execute(name: str, probe: str) -> dict[str, Any]:
    """Runs notebook `name` top to bottom, then `probe` (code printing one JSON line) in its kernel."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: commit with outputs cleared"
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    for cell in nb.cells:  # CellExecutionError is raised on an error; check anyway
        assert not [o for o in cell.get("outputs", []) if o.output_type == "error"], cell.source
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return json.loads(out.strip().splitlines()[-1])


def run_workload(settings: Settings, procs: Procs, r: redis.Redis) -> dict[str, Any]:
    procs.monitor()
    for n in ("W1", "W2"):
        procs.worker(n, "--tasks", "ledger_tasks")
    procs.wait_assigned(["W1", "W2"])
    specs = ([("ledger_add", [i, 1, 0.02]) for i in range(150)] + [("add", [i, i]) for i in range(20)]
             + [("flaky", [0.5, i]) for i in range(20)] + [("fail", [f"boom {i % 2}"]) for i in range(10)])
    started = time.monotonic()
    with YADTQ(settings) as q:
        ids = q.submit_many(specs)
        wait_for(lambda: q.backend.counts()["success"] >= 50, 60, 0.05, "some progress")
        pid = procs.procs["W1"].pid
        procs.kill9("W1")
        kill = (time.time(), "W1", pid)

        def all_final() -> bool:
            c = q.backend.counts()
            return c["success"] + c["failed"] == len(ids) and c["queued"] + c["processing"] == 0
        wait_for(all_final, 120, 0.2, "every task final after the kill")
        wall = time.monotonic() - started
        records = q.backend.get_many(ids)
        done_by, failed_by = q.live.completions()
        # Wait until the monitor saw W1 die, so the logs hold the verdict.
        wait_for(lambda: q.live.workers().get("W1", {}).get("status") == "DEAD", 30, 0.2, "W1 declared DEAD")
    for label in ("W2", "monitor"):  # a clean stop flushes the event logs
        procs.procs[label].send_signal(signal.SIGTERM)
        procs.procs[label].wait(timeout=30)
    return {"ids": ids, "records": records, "done_by": done_by, "failed_by": failed_by, "kill": kill,
            "wall": wall, "ledger": read_ledger(r, settings.prefix),
            "ledger_rows": [line.split() for line in r.lrange(settings.prefix + "ledger", 0, -1)]}


def write_chaos_dir(out: Path, run: dict[str, Any], export_dir: Path, log_dir: Path) -> None:
    """The chaos-run format (see notebooks/chaos_report.ipynb) from this run."""
    ledger_ids = {tid for tid in run["ledger"]}
    status = {rec.task_id: rec.status for rec in run["records"]}
    killed = {run["kill"][2]}
    twice = sum(1 for runs in run["ledger"].values() for pid, _ in runs[:-1] if pid not in killed)
    reruns = sum(len(runs) - 1 for runs in run["ledger"].values())
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({
        "tasks": len(ledger_ids), "kills": 1, "lost": sum(status[t] != "success" for t in ledger_ids),
        "run_twice_after_completion": twice, "reruns_after_midrun_kill": reruns - twice,
        "wall_s": round(run["wall"], 2), "throughput": round(len(ledger_ids) / run["wall"], 1)}))
    (out / "kills.csv").write_text("ts,worker,pid\n{},{},{}\n".format(*run["kill"]))
    (out / "ledger.csv").write_text("task_id,pid,attempt\n" + "".join(f"{t},{p},{a}\n" for t, p, a in run["ledger_rows"]))
    shutil.copytree(export_dir, out / "export")
    shutil.copytree(log_dir, out / "logs")


def expected_latency(records: list[Any]) -> dict[tuple[str, str], dict[str, float]]:
    by: dict[tuple[str, str], list[float]] = {}
    for rec in records:
        if rec.status in ("success", "failed") and rec.started is not None:
            by.setdefault((rec.task, "queue_wait"), []).append(rec.started - rec.submitted)
            by.setdefault((rec.task, "run_time"), []).append(rec.finished - rec.started)
    return {k: {"count": len(v), **{f"p{q}": float(np.percentile(v, q)) for q in QS}} for k, v in by.items()}


def test_notebooks_run_on_a_real_workload_and_match_redis(settings: Settings, procs: Procs, r: redis.Redis,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_workload(settings, procs, r)
    export_dir = tmp_path / "export"
    got = run_cli(settings, "export", "--out", str(export_dir))
    assert got.returncode == 0, got.stderr
    assert f"tasks {len(run['ids'])}" in got.stdout
    chaos_dir = tmp_path / "chaos"
    write_chaos_dir(chaos_dir, run, export_dir, Path(settings.log_dir))

    for k, v in {**python_kernel(tmp_path), "YADTQ_LOG_DIR": settings.log_dir, "YADTQ_EXPORT_DIR": str(export_dir),
                 "YADTQ_CHAOS_DIR": str(chaos_dir), "PLOTLY_RENDERER": "json",
                 "PYTHONPATH": str(ROOT)}.items():
        monkeypatch.setenv(k, v)

    tables = execute("task_analysis", "import json; print(json.dumps({"
                     "'per_worker': per_worker.to_dict('index'), 'latency': latency.to_dict('records'),"
                     "'gantt_workers': sorted(rows['worker'].unique()), 'deaths': deaths['worker'].tolist()}))")
    # Per-worker counts: the task records, and the complete script's own counters, agree with the notebook.
    want = Counter((rec.worker, rec.status) for rec in run["records"])
    workers = sorted({w for w, _ in want})
    assert workers == ["W1", "W2"]
    assert tables["per_worker"] == {w: {"success": want[(w, "success")], "failed": want[(w, "failed")],
                                        "total": want[(w, "success")] + want[(w, "failed")]} for w in workers}
    assert {w: c["success"] for w, c in tables["per_worker"].items()} == run["done_by"]
    assert {w: c["failed"] for w, c in tables["per_worker"].items() if c["failed"]} == run["failed_by"]
    # Latency percentiles per task type.
    expected = expected_latency(run["records"])
    got_latency = {(row["task"], row["metric"]): row for row in tables["latency"]}
    assert set(got_latency) == set(expected)
    for key, want_row in expected.items():
        for col, value in want_row.items():
            assert got_latency[key][col] == pytest.approx(value, rel=1e-9, abs=1e-6), (key, col)
    assert tables["gantt_workers"] == ["W1", "W2"] and "W1" in tables["deaths"]

    chaos = execute("chaos_report", "import json; print(json.dumps({"
                    "'verdict': verdict[['check', 'ok']].values.tolist(), 'again': len(again),"
                    "'recovery': recovery[['worker', 'recovery_s']].values.tolist()}))")
    assert chaos["verdict"] and all(ok for _, ok in chaos["verdict"])
    assert chaos["again"] == sum(len(v) > 1 for v in run["ledger"].values())
    [(worker, recovery_s)] = chaos["recovery"]
    assert worker == "W1" and recovery_s > 0  # W2 finished one of W1's partitions' tasks after the kill


def test_export_pages_through_each_status_and_honours_limit(settings: Settings, q: YADTQ, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from notebooks.analysis import load_export
    from yadtq.store import export as E
    monkeypatch.setattr(E, "PAGE", 2)  # several pages from five tasks
    ids = q.submit_many([("add", [i, 1]) for i in range(5)])  # no worker: all stay queued
    stats = E.export(q.backend, q.live, tmp_path / "all")
    got = load_export(tmp_path / "all")
    assert sorted(got.tasks["task_id"]) == sorted(ids) and not stats.truncated
    assert got.meta["counts"]["queued"] == 5 and sorted(got.tasks["args"].map(json.loads)) == [[i, 1] for i in range(5)]
    cut = run_cli(settings, "export", "--out", str(tmp_path / "cut"), "--limit", "3", "--format", "parquet")
    assert cut.returncode == 0 and "cut by --limit" in cut.stdout, cut.stderr
    assert len(load_export(tmp_path / "cut").tasks) == 3
    assert run_cli(settings, "export", "--out", str(tmp_path / "x"), "--limit", "0").returncode == 2


def test_export_writes_headers_of_empty_tables_and_whole_numbers(settings: Settings, q: YADTQ, tmp_path: Path) -> None:
    from notebooks.analysis import load_export
    from yadtq.store import export as E
    from yadtq.store.keys import Keys
    claimed, waiting = q.submit_many([("add", [1, 1]), ("add", [2, 2])])
    q.redis.hset(Keys(settings.prefix).task(claimed), "partition", 1)  # as a claim writes it; `waiting` has none
    got = run_cli(settings, "export", "--out", str(tmp_path / "csv"))
    assert got.returncode == 0, got.stderr
    for name, columns in E.COLUMNS.items():  # no worker died, no heartbeat: empty tables, with their header
        header = (tmp_path / "csv" / f"{name}.csv").read_text().splitlines()[0]
        assert header.split(",")[:len(columns)] == list(columns), name
    assert (tmp_path / "csv" / "failures.csv").read_text() == ",".join(E.COLUMNS["failures"]) + "\n"
    rows = {line.split(",")[0]: line.split(",") for line in (tmp_path / "csv" / "tasks.csv").read_text().splitlines()}
    where = E.TASK_COLUMNS.index("partition")
    assert rows[claimed][where] == "1" and rows[waiting][where] == ""  # not 1.0 and nan
    assert rows[claimed][E.TASK_COLUMNS.index("tries")] == str(settings.tries)
    back = load_export(tmp_path / "csv")
    assert list(back.failures.columns) == list(E.COLUMNS["failures"]) and back.failures.empty
    E.export(q.backend, q.live, tmp_path / "pq", fmt="parquet")
    parquet = load_export(tmp_path / "pq")
    assert str(parquet.tasks["partition"].dtype) == "Int64" and parquet.failures.empty

"""Loading and shaping a run's logs and exports into pandas frames for the notebooks.

Sources, all files (no Redis needed):

* the event logs, `<log_dir>/*.events.jsonl` (`load_events`): what each
  process saw, with exact per-attempt timing; a process killed with
  kill -9 loses its last ~100 ms of buffered events;
* a `yadtq export` directory (`load_export`): the task records as Redis
  stored them (complete, so counts and latencies come from here), the
  heartbeat log, the failure history and the monitor's time series;
* a chaos run directory (`load_chaos`): summary.json, kills.csv,
  ledger.csv, and optionally export/ and logs/.

Times are epoch seconds in `ts`-like columns; `as_time` makes datetimes
(UTC) for plotting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 95, 99)
TERMINAL = ("task_succeeded", "task_failed", "task_retried", "task_fenced")
EXPORT_TABLES = ("tasks", "heartbeats", "failures", "series", "series_by_worker", "workers", "dead_letters")
EVENT_COLUMNS = ("ts", "event", "process", "pid", "task_id", "task", "worker", "partition", "offset",
                 "attempt", "status", "duration", "error", "partitions")


def as_time(ts: pd.Series) -> pd.Series:
    """Epoch seconds to naive datetimes in UTC: plotly's date axes take no time zone."""
    return pd.to_datetime(ts, unit="s")


# -- loading -------------------------------------------------------------------
def _parse_line(line: str) -> dict[str, Any] | None:
    try:
        event: dict[str, Any] = json.loads(line)
    except ValueError:
        # A process killed mid-flush leaves half a line, and its successor appends
        # to the same file: keep the whole event that follows the fragment.
        cut = line.rfind('{"ts":')
        if cut > 0:
            return _parse_line(line[cut:])
        return None
    return event


def read_events(lines: Iterable[str]) -> tuple[list[dict[str, Any]], int]:
    """(events, lines that could not be read) from JSON lines."""
    out, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        body = _parse_line(line)
        if body is None or "ts" not in body or "event" not in body:
            bad += 1
        else:
            out.append(body)
    return out, bad


def events_frame(events: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Events as a frame sorted by time, with every documented column present."""
    df = pd.DataFrame(list(events))
    for c in EVENT_COLUMNS:
        if c not in df.columns:
            df[c] = None
    df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    df["time"] = as_time(df["ts"])
    return df


def load_events(log_dir: str | Path) -> pd.DataFrame:
    """Every `*.events.jsonl` under `log_dir`, as one frame sorted by `ts`.

    `df.attrs["unreadable"]` counts lines that were not JSON events.
    Raises FileNotFoundError if the directory holds no event files.
    """
    paths = sorted(Path(log_dir).glob("*.events.jsonl"))
    if not paths:
        raise FileNotFoundError(f"no *.events.jsonl files in {log_dir}")
    events, bad = [], 0
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            got, n = read_events(f)
        events += got
        bad += n
    df = events_frame(events)
    df.attrs["unreadable"] = bad
    return df


@dataclass
class Export:
    """The tables of one `yadtq export` directory (empty frames for missing files)."""

    tasks: pd.DataFrame
    heartbeats: pd.DataFrame
    failures: pd.DataFrame
    series: pd.DataFrame
    series_by_worker: pd.DataFrame
    workers: pd.DataFrame
    dead_letters: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


def _read_table(path: Path) -> pd.DataFrame:
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        file = path.with_suffix(suffix)
        if file.exists():
            try:
                return reader(file)
            except pd.errors.EmptyDataError:  # a CSV of an empty table has no header
                return pd.DataFrame()
    return pd.DataFrame()


def load_export(export_dir: str | Path) -> Export:
    """Reads a `yadtq export` directory. Raises FileNotFoundError without meta.json."""
    d = Path(export_dir)
    meta_path = d / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{d} is not a yadtq export (no meta.json)")
    tables = {name: _read_table(d / name) for name in EXPORT_TABLES}
    tables["tasks"] = task_latencies(tables["tasks"])
    return Export(**tables, meta=json.loads(meta_path.read_text()))


# -- tasks: latency, counts, throughput ------------------------------------------
def task_latencies(tasks: pd.DataFrame) -> pd.DataFrame:
    """Adds queue_wait = started - submitted and run_time = finished - started.

    `started` is when the final attempt was claimed, so queue_wait includes
    earlier attempts and their backoff, and run_time includes the wait of a
    task claimed ahead of time behind the one running (the worker claims up
    to `concurrency` tasks per round trip).
    """
    df = tasks.copy()
    for c in ("submitted", "started", "finished"):
        if c not in df.columns:
            df[c] = np.nan
    df["queue_wait"] = df["started"] - df["submitted"]
    df["run_time"] = df["finished"] - df["started"]
    return df


def percentiles(df: pd.DataFrame, value: str, by: str = "task",
                qs: Sequence[int] = PERCENTILES) -> pd.DataFrame:
    """count, mean, pQ... and max of `value` per `by` (linear interpolation, as numpy)."""
    rows = []
    for key, group in df.dropna(subset=[value]).groupby(by, sort=True):
        v = group[value].to_numpy(dtype=float)
        row: dict[str, Any] = {by: key, "count": len(v), "mean": float(v.mean())}
        row.update({f"p{q}": float(np.percentile(v, q)) for q in qs})
        row["max"] = float(v.max())
        rows.append(row)
    return pd.DataFrame(rows, columns=[by, "count", "mean", *[f"p{q}" for q in qs], "max"])


def latency_table(tasks: pd.DataFrame, statuses: Sequence[str] = ("success", "failed"),
                  qs: Sequence[int] = PERCENTILES) -> pd.DataFrame:
    """Percentiles of queue_wait and run_time (seconds) per task type, finished tasks only."""
    done = task_latencies(tasks[tasks["status"].isin(statuses)])
    parts = [percentiles(done, m, "task", qs).assign(metric=m) for m in ("queue_wait", "run_time")]
    out = pd.concat(parts, ignore_index=True)
    return out[["task", "metric", *[c for c in out.columns if c not in ("task", "metric")]]]


def latency_long(tasks: pd.DataFrame, statuses: Sequence[str] = ("success", "failed")) -> pd.DataFrame:
    """One row per finished task and metric (queue_wait, run_time): for box plots."""
    done = task_latencies(tasks[tasks["status"].isin(statuses)])
    return done.melt(id_vars=["task_id", "task", "worker"], value_vars=["queue_wait", "run_time"],
                     var_name="metric", value_name="seconds").dropna(subset=["seconds"])


def worker_counts(tasks: pd.DataFrame) -> pd.DataFrame:
    """Finished tasks per worker that stored the outcome: success, failed, total."""
    done = tasks[tasks["status"].isin(["success", "failed"]) & tasks["worker"].notna()]
    out = pd.crosstab(done["worker"], done["status"]).reindex(columns=["success", "failed"], fill_value=0)
    out["total"] = out.sum(axis=1)
    out.columns.name = None
    return out.astype(int)


def throughput(df: pd.DataFrame, interval: float = 1.0, ts: str = "finished", by: str | None = None) -> pd.DataFrame:
    """Rows per `interval` seconds of `ts`, overall (column `count`) or one column per `by` value.

    Indexed by the interval's start time; empty intervals count 0.
    """
    d = df.dropna(subset=[ts])
    if d.empty:
        return pd.DataFrame({"count": []})
    bins = (np.floor(d[ts] / interval) * interval).rename("t")
    out = bins.value_counts().sort_index().to_frame("count") if by is None else pd.crosstab(bins, d[by])
    full = np.arange(bins.min(), bins.max() + interval / 2, interval)
    out = out.reindex(full, fill_value=0)
    out.index = as_time(pd.Series(out.index, name="t"))
    out.columns.name = None
    return out


def run_durations(events: pd.DataFrame) -> pd.DataFrame:
    """Each attempt's pure run time from the log (`duration` of its outcome event)."""
    return events[events["event"].isin(TERMINAL[:3]) & events["duration"].notna()][
        ["ts", "task_id", "task", "worker", "attempt", "event", "duration"]].reset_index(drop=True)


# -- retries and failures ------------------------------------------------------------
def failure_table(events: pd.DataFrame) -> pd.DataFrame:
    """Retries, final failures, rejections and fenced outcomes, by task type and error."""
    kinds = ["task_retried", "task_failed", "task_rejected", "task_fenced"]
    d = events[events["event"].isin(kinds)].copy()
    if d.empty:
        return pd.DataFrame(columns=["task", "error", *kinds, "total"])
    d["task"] = d["task"].fillna("(unreadable)")
    d["error"] = d["error"].fillna("")
    out = pd.crosstab([d["task"], d["error"]], d["event"]).reindex(columns=kinds, fill_value=0)
    out["total"] = out.sum(axis=1)
    out.columns.name = None
    return out.reset_index().sort_values("total", ascending=False, kind="stable").reset_index(drop=True)


def attempts_table(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per task type: tasks, how many needed more than one attempt, final failures, mean attempts."""
    g = tasks.groupby("task")
    return pd.DataFrame({
        "tasks": g.size(),
        "retried": g["attempts"].apply(lambda a: int((a > 1).sum())),
        "failed": g["status"].apply(lambda s: int((s == "failed").sum())),
        "mean_attempts": g["attempts"].mean().round(3),
    }).reset_index()


# -- timeline ---------------------------------------------------------------------------
def gantt_rows(events: pd.DataFrame) -> pd.DataFrame:
    """One row per attempt: worker, task, start, finish, outcome.

    An attempt is a `task_started` matched with the same process's outcome
    event for that task and attempt. One without an outcome was cut off (its
    process died, or the log lost it with the process): it ends at that
    process's last event, with outcome `cut off`.
    """
    starts = events[events["event"] == "task_started"]
    cols = ["worker", "task_id", "task", "attempt", "pid", "partition", "start", "finish", "outcome"]
    if starts.empty:
        return pd.DataFrame(columns=cols)
    ends = events[events["event"].isin(TERMINAL)]
    key = ["pid", "task_id", "attempt"]
    ends = ends.drop_duplicates(key, keep="first")[[*key, "ts", "event"]].rename(
        columns={"ts": "finish", "event": "outcome"})
    rows = starts[["worker", "task_id", "task", "attempt", "pid", "partition", "ts"]].rename(columns={"ts": "start"})
    rows = rows.merge(ends, on=key, how="left")
    # Only the worker's own events say which process ran what.
    own = events[events["process"].astype(str).str.startswith("worker-")]
    last = own.groupby("pid")["ts"].max()
    cut = rows["finish"].isna()
    rows.loc[cut, "finish"] = rows.loc[cut, "pid"].map(last)
    rows["outcome"] = rows["outcome"].fillna("cut off").str.removeprefix("task_")
    return rows[cols].sort_values("start", kind="stable").reset_index(drop=True)


def worker_deaths(events: pd.DataFrame, kills: pd.DataFrame | None = None) -> pd.DataFrame:
    """When workers went away: kills (if given), injected crashes, the monitor's DEAD verdicts."""
    parts = [events[events["event"].isin(["worker_died", "crash_injected"])][["ts", "worker", "event"]]]
    if kills is not None and not kills.empty:
        parts.append(kills[["ts", "worker"]].assign(event="killed"))
    out = pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)
    out["time"] = as_time(out["ts"])
    return out


def reassignments(events: pd.DataFrame) -> pd.DataFrame:
    """Every partitions_assigned event: time, worker, pid, the partitions it now holds."""
    d = events[events["event"] == "partitions_assigned"][["ts", "time", "worker", "pid", "partitions"]]
    return d.reset_index(drop=True)


def heartbeat_gaps(heartbeats: pd.DataFrame) -> pd.DataFrame:
    """Time between consecutive heartbeats of each worker (column `gap`, seconds)."""
    if heartbeats.empty:
        return pd.DataFrame(columns=["worker", "ts", "gap"])
    d = heartbeats[["worker", "ts"]].sort_values(["worker", "ts"], kind="stable")
    d = d.assign(gap=d.groupby("worker")["ts"].diff()).dropna(subset=["gap"])
    return d.reset_index(drop=True)


def heartbeat_summary(heartbeats: pd.DataFrame, interval: float) -> pd.DataFrame:
    """Per worker: beats, median and max gap, gaps over 2x the heartbeat interval."""
    gaps = heartbeat_gaps(heartbeats)
    g = gaps.groupby("worker")["gap"]
    return pd.DataFrame({
        "beats": heartbeats.groupby("worker").size(),
        "median_gap": g.median().round(3),
        "max_gap": g.max().round(3),
        "late": g.apply(lambda x: int((x > 2 * interval).sum())),
    }).fillna({"late": 0}).reset_index()


# -- chaos runs --------------------------------------------------------------------------
@dataclass
class ChaosRun:
    summary: dict[str, Any]
    kills: pd.DataFrame
    ledger: pd.DataFrame
    export: Export | None = None
    events: pd.DataFrame | None = None


def load_chaos(run_dir: str | Path) -> ChaosRun:
    """A chaos run directory: summary.json, kills.csv, ledger.csv, optional export/ and logs/."""
    d = Path(run_dir)
    kills = pd.read_csv(d / "kills.csv")
    ledger = pd.read_csv(d / "ledger.csv")
    ledger["run"] = ledger.groupby("task_id").cumcount() + 1  # rows are in execution order
    export = load_export(d / "export") if (d / "export" / "meta.json").exists() else None
    events = load_events(d / "logs") if any((d / "logs").glob("*.events.jsonl")) else None
    return ChaosRun(json.loads((d / "summary.json").read_text()), kills, ledger, export, events)


def reexecutions(ledger: pd.DataFrame, kills: pd.DataFrame) -> pd.DataFrame:
    """Tasks executed more than once, and whether each earlier run's process was killed.

    The only allowed re-execution is of a run cut off mid-way by its process's
    death, so `explained` must be true on every row.
    """
    killed = set(kills["pid"])
    runs = ledger.groupby("task_id").agg(runs=("pid", "size"), pids=("pid", list), attempts=("attempt", list))
    again = runs[runs["runs"] > 1].copy()
    again["explained"] = again["pids"].apply(lambda p: all(x in killed for x in p[:-1]))
    return again.reset_index()


def recovery_times(kills: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per kill: the partitions the victim held, when another worker got them, and recovery time.

    recovery_s = time from the kill to the first `task_succeeded` on any of
    the victim's partitions by another process: how long its share of the
    queue stood still. reassigned_s = time to the first assignment of one of
    them to another process (the group noticing the death).
    """
    rows = []
    assigned = events[events["event"] == "partitions_assigned"]
    done = events[events["event"] == "task_succeeded"]
    for k in kills.itertuples(index=False):
        mine = assigned[(assigned["pid"] == k.pid) & (assigned["ts"] <= k.ts)]
        held = set(mine.iloc[-1]["partitions"]) if len(mine) else set()
        later = assigned[(assigned["ts"] > k.ts) & (assigned["pid"] != k.pid)]
        took = later[later["partitions"].apply(lambda p, held=held: bool(held & set(p)))]
        first = done[(done["ts"] > k.ts) & (done["pid"] != k.pid) & done["partition"].isin(held)]
        rows.append({
            "ts": k.ts, "worker": k.worker, "pid": k.pid, "partitions": sorted(held),
            "reassigned_s": float(took["ts"].iloc[0] - k.ts) if len(took) else np.nan,
            "recovery_s": float(first["ts"].iloc[0] - k.ts) if len(first) else np.nan,
        })
    out = pd.DataFrame(rows, columns=["ts", "worker", "pid", "partitions", "reassigned_s", "recovery_s"])
    out["time"] = as_time(out["ts"])
    return out


def chaos_verdict(run: ChaosRun) -> pd.DataFrame:
    """The guarantees, each checked from the files: lost, completed twice, re-runs explained."""
    checks: list[tuple[str, Any, Any]] = []
    if run.export is not None:
        t = run.export.tasks
        lost = int((~t["status"].isin(["success", "failed"])).sum())  # failed is an outcome, not a loss
        checks.append(("tasks without a final outcome (lost)", lost, 0))
    checks.append(("lost (summary.json)", run.summary.get("lost"), 0))
    again = reexecutions(run.ledger, run.kills)
    checks.append(("re-runs whose earlier run was not killed (ledger)", int((~again["explained"]).sum()), 0))
    checks.append(("run twice after completion (summary.json)", run.summary.get("run_twice_after_completion"), 0))
    if run.events is not None:
        ok = run.events[run.events["event"] == "task_succeeded"]
        twice = int((ok["task_id"].value_counts() > 1).sum())
        checks.append(("tasks with more than one task_succeeded (logs)", twice, 0))
    out = pd.DataFrame(checks, columns=["check", "value", "expected"])
    out["ok"] = out["value"] == out["expected"]
    return out

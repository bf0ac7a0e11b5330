"""What each dashboard page reads: every read bounded, all through a `Source` (dashboard/source.py):
the library's read API on Redis, or the HTTP API.

No Streamlit here, so `bench/dashboard_refresh.py` times exactly what a page
refresh reads, with a million task records. Counts come from the status
indexes (ZCARD), lists are pages of them, search is `yadtq.store.search` (bounded by
its budget), histories are capped ranges. Nothing scans the keyspace.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import pandas as pd

from dashboard.source import Source, Stats, TaskView
from yadtq.store import search
from yadtq.store.backend import TaskRecord
from yadtq.store.live_state import ALIVE, DEAD
from yadtq.store.readiness import waiting_note
from yadtq.task.status import STATUSES, Status

PAGE = 50
WINDOWS = {"5 minutes": 300.0, "15 minutes": 900.0, "1 hour": 3600.0, "6 hours": 21_600.0, "24 hours": 86_400.0}


# -- human times ----------------------------------------------------------------
def local_time(ts: float | None, tz: tzinfo | None = None) -> str:
    """'2026-11-22 23:09:29' in the viewer's time zone ('' for no time)."""
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


def short_time(ts: float | None, now: float, tz: tzinfo | None = None) -> str:
    """'23:09:29' for a time of the viewer's today, '2026-11-21 23:09' for an older one ('' for no time):
    a table column narrow enough to be read whole."""
    if not ts:
        return ""
    when = datetime.fromtimestamp(ts, tz)
    return when.strftime("%H:%M:%S" if when.date() == datetime.fromtimestamp(now, tz).date() else "%Y-%m-%d %H:%M")


def first_line(text: str | None, limit: int = 200) -> str:
    """An error's first line (a traceback's last line is on the task's page): 'ZeroDivisionError: division by zero'."""
    lines = (text or "").strip().splitlines()
    return (lines[0][:limit] + (" …" if len(lines) > 1 else "")) if lines else ""


def ago(ts: float | None, now: float) -> str:
    if not ts:
        return ""
    return duration(max(0.0, now - ts)) + " ago"


def duration(seconds: float | None) -> str:
    """'850 ms', '12.3 s', '4 min 05 s', '2 h 03 min'."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _times(ts: pd.Series, tz: tzinfo | None) -> pd.Series:
    """Epoch seconds as wall-clock datetimes of `tz` (what a chart's axis shows)."""
    utc = pd.to_datetime(ts, unit="s", utc=True)
    return utc.dt.tz_convert(tz or datetime.now().astimezone().tzinfo).dt.tz_localize(None)


# -- Overview -------------------------------------------------------------------
@dataclass
class Overview:
    at: float
    counts: dict[str, int]
    workers: list[dict[str, Any]]
    series: pd.DataFrame
    throughput: pd.DataFrame
    heartbeats: pd.DataFrame
    stats: Stats
    oldest_queued: float | None

    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w.get("status") == ALIVE)

    @property
    def waiting(self) -> str | None:
        """Why no task can start now (workers still joining, none alive), or None."""
        return waiting_note(self.workers)

    @property
    def dead(self) -> int:
        return sum(1 for w in self.workers if w.get("status") == DEAD)

    @property
    def throughput_now(self) -> float:
        """Completions per second over the newest interval of the time series."""
        if len(self.series) < 2:
            return 0.0
        a, b = self.series.iloc[-2], self.series.iloc[-1]
        dt = b["ts"] - a["ts"]
        finished = b[Status.SUCCESS] + b[Status.FAILED] - a[Status.SUCCESS] - a[Status.FAILED]
        return float(finished / dt) if dt > 0 else 0.0


def load_overview(src: Source, window: float, prune_after: float, tz: tzinfo | None = None) -> Overview:
    now = time.time()
    t = src.timeline(window)
    return Overview(
        at=now, counts=src.counts(), workers=src.workers(prune_after),
        series=series_frame(t.series, tz), throughput=throughput_frame(t.series, tz),
        heartbeats=heartbeats_frame(t.heartbeats, tz), stats=src.type_stats(window), oldest_queued=t.oldest_queued)


def series_frame(samples: list[dict[str, Any]], tz: tzinfo | None = None) -> pd.DataFrame:
    cols = ["ts", *STATUSES]
    df = pd.DataFrame([{c: s.get(c, 0) for c in cols} for s in samples], columns=cols)
    df["time"] = _times(df["ts"], tz)
    return df


def throughput_frame(samples: list[dict[str, Any]], tz: tzinfo | None = None) -> pd.DataFrame:
    """Completions per second per worker, from the differences of cumulative counts."""
    rows = []
    for a, b in itertools.pairwise(samples):
        dt = b["ts"] - a["ts"]
        if dt <= 0:
            continue
        for worker, total in b.get("done_by", {}).items():
            rate = max(0, total - a.get("done_by", {}).get(worker, 0)) / dt
            rows.append({"ts": b["ts"], "worker": worker, "tasks/s": rate})
    df = pd.DataFrame(rows, columns=["ts", "worker", "tasks/s"])
    df["time"] = _times(df["ts"], tz)
    return df


def heartbeats_frame(beats: list[dict[str, Any]], tz: tzinfo | None = None) -> pd.DataFrame:
    cols = ["ts", "worker", "state", "pid", "current_task"]
    df = pd.DataFrame([{c: b.get(c) for c in cols} for b in beats], columns=cols).sort_values("ts")
    df["time"] = _times(df["ts"], tz)
    df["gap (s)"] = df.groupby("worker")["ts"].diff().round(1)
    return df


def types_frame(report: Stats) -> pd.DataFrame:
    rows = []
    for d in report.types:
        rows.append({"task": d["task"], "finished": d["finished"], "succeeded": d["succeeded"], "failed": d["failed"],
                     "cancelled": d["cancelled"],
                     "success rate": None if d["success_rate"] is None else round(100 * d["success_rate"], 1),
                     "run p50 (s)": d["run_p50"], "run p95 (s)": d["run_p95"],
                     "queue wait p50 (s)": d["wait_p50"], "queue wait p95 (s)": d["wait_p95"]})
    return pd.DataFrame(rows, columns=["task", "finished", "succeeded", "failed", "cancelled", "success rate",
                                       "run p50 (s)", "run p95 (s)", "queue wait p50 (s)", "queue wait p95 (s)"])


# -- Tasks ----------------------------------------------------------------------
def find_tasks(src: Source, query: search.TaskQuery, cursor: str | None = None, limit: int = PAGE
               ) -> search.SearchPage:
    return src.search(query, cursor, limit)


def tasks_frame(records: list[TaskRecord], now: float, tz: tzinfo | None = None) -> pd.DataFrame:
    rows = []
    for r in records:
        run = r.finished - r.started if r.finished and r.started and r.status != Status.CANCELLED else None
        rows.append({"task id": r.task_id, "task": r.task, "status": r.status, "args": str(r.args)[:80],
                     "result": "" if r.result is None else str(r.result)[:80], "error": first_line(r.error),
                     "attempts": r.attempts, "worker": r.worker or "", "progress": r.progress,
                     "submitted": short_time(r.submitted, now, tz), "started": short_time(r.started, now, tz),
                     "finished": short_time(r.finished, now, tz),
                     "run time": duration(run if run is not None else
                                          (now - r.started if r.status == Status.PROCESSING and r.started else None))})
    return pd.DataFrame(rows, columns=["task id", "task", "status", "args", "result", "error", "attempts", "worker",
                                       "progress", "submitted", "started", "finished", "run time"])


def load_task(src: Source, task_id: str, prune_after: float | None = None) -> TaskView | None:
    return src.task(task_id, prune_after)


# -- Workers and partitions -------------------------------------------------------
@dataclass
class Farm:
    at: float
    workers: list[dict[str, Any]]
    partitions: list[dict[str, Any]]
    queued: int


def load_farm(src: Source, prune_after: float) -> Farm:
    return Farm(time.time(), src.workers(prune_after), src.partitions(), src.counts()[Status.QUEUED])


def workers_frame(workers: list[dict[str, Any]], now: float, tz: tzinfo | None = None) -> pd.DataFrame:
    rows = [{"worker": w["name"], "status": w.get("status"), "state": w.get("state"), "host": w.get("host"),
             "pid": w.get("pid"), "concurrency": w.get("concurrency"),
             "slots in use": w["slots_in_use"], "current tasks": ", ".join(w["running"][:5])
             + (f" (+{len(w['running']) - 5})" if len(w["running"]) > 5 else ""),
             "partitions": ", ".join(str(p) for p in w.get("partitions") or []),
             "done": w["done"], "failed": w["failed"],
             "last heartbeat": f"{local_time(w.get('last_heartbeat'), tz)} ({ago(w.get('last_heartbeat'), now)})"}
            for w in workers]
    return pd.DataFrame(rows, columns=["worker", "status", "state", "host", "pid", "concurrency", "slots in use",
                                       "current tasks", "partitions", "done", "failed", "last heartbeat"])


def partitions_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = [{"partition": p["partition"], "owner": p["owner"] or "(none)",
            "committed": "" if p["committed"] is None else p["committed"],
            "in broker": "" if p["in_broker"] is None else p["in_broker"], "buffered": p["buffered"],
            "running": p["running"], "paused": "yes" if p["paused"] else "",
            "waiting": sum(p["waiting"].values()), "why they wait": p["why"]} for p in rows]
    return pd.DataFrame(out, columns=["partition", "owner", "committed", "in broker", "buffered", "running", "paused",
                                      "waiting", "why they wait"])


def why_waiting(farm: Farm) -> str:
    """One sentence on the queue as a whole: what an operator asks first when tasks pile up."""
    alive = [w for w in farm.workers if w.get("status") == ALIVE]
    if not farm.queued:
        return "Nothing is waiting."
    note = waiting_note(farm.workers)
    if note:
        return f"{farm.queued:,} task(s) queued; {note}."
    if not alive:
        return f"{farm.queued:,} task(s) queued and no worker is alive to run them."
    paused = [w["name"] for w in alive if w.get("state") == "paused"]
    if len(paused) == len(alive):
        return f"{farm.queued:,} task(s) queued; every live worker is paused ({', '.join(paused)})."
    held = [p["partition"] for p in farm.partitions if p["owner"] in paused]
    orphans = [p["partition"] for p in farm.partitions if p["owner"] is None]
    slots = sum(int(w.get("concurrency") or 1) for w in alive if w.get("state") != "paused")
    busy = sum(w["slots_in_use"] for w in alive)
    reasons: dict[str, int] = {}
    for p in farm.partitions:
        for reason, n in p["waiting"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    told = "; ".join(f"{n} {search.WAIT_REASONS.get(r, r)}" for r, n in sorted(reasons.items()))
    if held:
        told = "; ".join(x for x in (f"{', '.join(paused)} paused: partition(s) {', '.join(map(str, held))} wait "
                                     "for it to resume", told) if x)
    if orphans:
        told = "; ".join(x for x in (f"no live worker owns partition(s) {', '.join(map(str, orphans))}", told) if x)
    return (f"{farm.queued:,} task(s) queued; {busy} of {slots} slot(s) busy on {len(alive)} live worker(s)"
            + (f"; {told}" if told else "") + ".")


# -- Failures ---------------------------------------------------------------------
@dataclass
class Failures:
    failed: search.SearchPage
    deaths: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]


def load_failures(src: Source, limit: int = PAGE) -> Failures:
    return Failures(find_tasks(src, search.TaskQuery(statuses=(Status.FAILED,)), limit=limit),
                    src.deaths(limit), src.dead_letters(limit))


def deaths_frame(deaths: list[dict[str, Any]], tz: tzinfo | None = None) -> pd.DataFrame:
    rows = [{"worker": d.get("worker"), "host": d.get("host"), "pid": d.get("pid"),
             "declared dead": local_time(d.get("declared_at"), tz),
             "last heartbeat": local_time(d.get("last_heartbeat"), tz),
             "tasks held": ", ".join(d.get("tasks") or []), "partitions": str(d.get("partitions") or [])}
            for d in deaths]
    return pd.DataFrame(rows, columns=["worker", "host", "pid", "declared dead", "last heartbeat", "tasks held",
                                       "partitions"])


def dead_letters_frame(letters: list[dict[str, Any]], tz: tzinfo | None = None) -> pd.DataFrame:
    rows = [{"time": local_time(d.get("ts"), tz), "task id": d.get("task_id") or "", "task": d.get("task") or "",
             "where": f"partition {d.get('partition')} @ {d.get('offset')}", "error": str(d.get("error") or "")[:300]}
            for d in letters]
    return pd.DataFrame(rows, columns=["time", "task id", "task", "where", "error"])

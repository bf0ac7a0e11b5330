"""One refresh of the dashboard: every read bounded, all through the library's read API.

`load_snapshot` is what the live panels render and what `bench/` times with a
million task records: counts come from the status indexes (ZCARD), lists are
pages of them, histories are capped ranges. Nothing here scans the keyspace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from yadtq.client import YADTQ
from yadtq.keys import STATUSES

PAGE = 50


@dataclass
class Snapshot:
    at: float
    counts: dict[str, int]
    workers: pd.DataFrame
    failures: pd.DataFrame
    series: pd.DataFrame
    throughput: pd.DataFrame
    heartbeats: pd.DataFrame
    tasks: dict[str, pd.DataFrame] = field(default_factory=dict)
    dead_letters: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def alive(self) -> int:
        return int((self.workers["status"] == "ALIVE").sum()) if len(self.workers) else 0

    @property
    def dead(self) -> int:
        return int((self.workers["status"] == "DEAD").sum()) if len(self.workers) else 0

    @property
    def throughput_now(self) -> float:
        """Completions per second over the newest interval of the time series."""
        if len(self.series) < 2:
            return 0.0
        a, b = self.series.iloc[-2], self.series.iloc[-1]
        dt = b["ts"] - a["ts"]
        return float((b["success"] + b["failed"] - a["success"] - a["failed"]) / dt) if dt > 0 else 0.0


def load_snapshot(q: YADTQ, prune_after: float, page: int = PAGE, offsets: dict[str, int] | None = None,
                  history: int = 600) -> Snapshot:
    now = time.time()
    offsets = offsets or {}
    done, failed = q.live.completions()
    samples = q.live.series(history)
    return Snapshot(
        at=now,
        counts=q.backend.counts(),
        workers=workers_frame(q.live.workers(), done, failed, now, prune_after),
        failures=pd.DataFrame(q.live.failures(100)),
        series=series_frame(samples),
        throughput=throughput_frame(samples),
        heartbeats=pd.DataFrame(q.live.heartbeats(2000)),
        tasks={s: tasks_frame(q.backend.list(s, page, offsets.get(s, 0), newest_first=s != "queued"), now)
               for s in STATUSES},
        dead_letters=pd.DataFrame(q.live.dead_letters(page)),
    )


def workers_frame(workers: dict[str, dict[str, Any]], done: dict[str, int], failed: dict[str, int],
                  now: float, prune_after: float) -> pd.DataFrame:
    """The live view: DEAD and LEFT workers drop out after `prune_after` seconds."""
    rows = []
    for name, w in sorted(workers.items()):
        if w.get("status") != "ALIVE" and now - w.get("since", now) > prune_after:
            continue
        rows.append({"worker": name, "status": w.get("status"), "state": w.get("state"),
                     "last heartbeat (s ago)": round(now - w.get("last_heartbeat", now), 1),
                     "done": done.get(name, 0), "failed": failed.get(name, 0),
                     "current task": w.get("current_task") or "", "partitions": w.get("partitions", []),
                     "host": w.get("host"), "pid": w.get("pid")})
    return pd.DataFrame(rows, columns=["worker", "status", "state", "last heartbeat (s ago)", "done", "failed",
                                       "current task", "partitions", "host", "pid"])


def series_frame(samples: list[dict[str, Any]]) -> pd.DataFrame:
    cols = ["ts", *STATUSES]
    df = pd.DataFrame([{c: s.get(c, 0) for c in cols} for s in samples], columns=cols)
    df["time"] = pd.to_datetime(df["ts"], unit="s")
    return df


def throughput_frame(samples: list[dict[str, Any]]) -> pd.DataFrame:
    """Completions per second per worker, from the differences of cumulative counts."""
    rows = []
    for a, b in zip(samples, samples[1:]):
        dt = b["ts"] - a["ts"]
        if dt <= 0:
            continue
        for worker, total in b.get("done_by", {}).items():
            rate = max(0, total - a.get("done_by", {}).get(worker, 0)) / dt
            rows.append({"time": pd.to_datetime(b["ts"], unit="s"), "worker": worker, "tasks/s": rate})
    return pd.DataFrame(rows, columns=["time", "worker", "tasks/s"])


def tasks_frame(records: list[Any], now: float) -> pd.DataFrame:
    rows = []
    for r in records:
        rows.append({"task id": r.task_id, "task": r.task, "args": str(r.args)[:80], "status": r.status,
                     "result": "" if r.result is None else str(r.result)[:80], "error": (r.error or "")[:200],
                     "attempts": r.attempts, "worker": r.worker or "",
                     "submitted": _clock(r.submitted), "started": _clock(r.started), "finished": _clock(r.finished),
                     "elapsed (s)": round(now - r.started, 1) if r.status == "processing" and r.started else None})
    return pd.DataFrame(rows, columns=["task id", "task", "args", "status", "result", "error", "attempts", "worker",
                                       "submitted", "started", "finished", "elapsed (s)"])


def _clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else ""

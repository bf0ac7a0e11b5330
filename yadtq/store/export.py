"""`yadtq export`: a run's Redis state as files, so a notebook works offline.

Writes into one directory (CSV by default, Parquet with `fmt="parquet"`):

* `tasks`: every task record, read through `Backend.list` over each status
  index, page by page (never KEYS/SCAN); nested fields (args, kwargs,
  result) as JSON text.
* `heartbeats`: the capped heartbeat log, oldest first.
* `failures`: the monitor's DEAD declarations, oldest first.
* `series` (queue depth per status) and `series_by_worker` (cumulative
  completions per worker), the monitor's time series.
* `workers`: the registry with the per-worker success/failure counters.
* `dead_letters`: records that could not run.

In every table a nested value (a dict or a list, such as a heartbeat's `partition_state`)
is written as JSON text, in CSV and Parquet alike.
* `meta.json`: when, from which prefix, status counts, whether `limit` cut.

Export a quiet system for an exact picture: on a live one tasks can move
between status indexes while the pages are read (each task is kept once).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from yadtq.store.backend import Backend, TaskRecord
from yadtq.store.dead_letters import DLQ_KEPT
from yadtq.store.live_state import FAILURES_KEPT, LiveState
from yadtq.store.shard_reads import merged_ascending
from yadtq.task.status import STATUSES

PAGE = 1000
FORMATS = ("csv", "parquet")
TASK_COLUMNS = ("task_id", "task", "status", "worker", "partition", "attempts", "failures", "tries",
                "submitted", "started", "finished", "error", "args", "kwargs", "result", "time_limit")
# Each table's columns, written even when it has no rows (a CSV with a header, not a bare newline);
# columns a row brings beyond these follow them.
COLUMNS: dict[str, tuple[str, ...]] = {
    "tasks": TASK_COLUMNS,
    "heartbeats": ("ts", "worker", "host", "pid", "incarnation", "state", "current_task", "done", "failed",
                   "partitions", "concurrency", "running", "partition_state"),
    "failures": ("worker", "host", "pid", "last_heartbeat", "declared_at", "tasks", "partitions", "source", "reason",
                 "exit_code"),
    "series": ("ts", *map(str, STATUSES)),
    "series_by_worker": ("ts", "worker", "done", "failed"),
    "workers": ("name", "status", "host", "pid", "state", "last_heartbeat", "partitions", "done_total",
                "failed_total"),
    "dead_letters": ("ts", "task_id", "task", "error", "topic", "partition", "offset", "size", "raw"),
}
# Whole numbers stay whole where some rows lack them (pandas would write 0.0 and NaN; Int64 writes 0 and "").
INTEGERS = {"partition", "attempts", "failures", "tries", "pid", "done", "failed", "concurrency", "exit_code",
            "offset", "size", "done_total", "failed_total", *map(str, STATUSES)}


@dataclass
class ExportStats:
    out: Path
    tasks: int = 0
    truncated: bool = False
    files: dict[str, int] = field(default_factory=dict)  # table name -> rows

    def summary(self) -> str:
        parts = ", ".join(f"{name} {rows}" for name, rows in self.files.items())
        return f"exported to {self.out}: {parts}" + (" (task list cut by --limit)" if self.truncated else "")


def iter_records(backend: Backend, status: str, limit: int | None = None) -> Iterator[TaskRecord]:
    """Records of one status, oldest first, `PAGE` at a time; at most `limit` ids read."""
    if backend.space.sharded:  # each shard's index walked once, merged by score
        merged = merged_ascending(backend.r, [k.status(status) for k in backend.space.shards],
                                  PAGE if limit is None else max(1, min(PAGE, limit)))
        while chunk := list(itertools.islice(merged, PAGE if limit is None else min(PAGE, limit))):
            yield from backend.get_many(chunk)
            if limit is not None:
                limit -= len(chunk)
        return
    offset = 0
    while limit is None or offset < limit:
        size = PAGE if limit is None else min(PAGE, limit - offset)
        ids = backend.list_ids(status, limit=size, offset=offset, newest_first=False)
        yield from backend.get_many(ids)  # drops ids whose record expired (result TTL)
        if len(ids) < size:
            return
        offset += size


def task_rows(records: Iterator[TaskRecord]) -> list[dict[str, Any]]:
    rows = []
    for rec in records:
        row = {c: getattr(rec, c) for c in TASK_COLUMNS}
        for c in ("args", "kwargs", "result"):
            row[c] = json.dumps(row[c])
        rows.append(row)
    return rows


def export(backend: Backend, live: LiveState, out: str | Path, limit: int | None = None,
           fmt: str = "csv") -> ExportStats:
    """Writes the tables described in the module docstring into `out` (created).

    `limit` caps the task records read per status (None: all of them).
    Raises ValueError for an unknown `fmt`; Redis errors propagate.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats = ExportStats(out)
    counts = backend.counts()
    seen: dict[str, dict[str, Any]] = {}
    for status in STATUSES:
        for row in task_rows(iter_records(backend, status, limit)):
            seen.setdefault(row["task_id"], row)  # a task that moved mid-export is kept once
        stats.truncated |= limit is not None and counts[status] > limit
    tasks = table("tasks", list(seen.values()))
    stats.tasks = len(tasks)

    settings = backend.settings
    heartbeats = list(reversed(live.heartbeats(settings.heartbeat_history)))
    failures = list(reversed(live.failures(FAILURES_KEPT)))
    for f in failures:
        f["tasks"], f["partitions"] = json.dumps(f.get("tasks", [])), json.dumps(f.get("partitions", []))
    for hb in heartbeats:
        hb["partitions"] = json.dumps(hb.get("partitions", []))
    samples = live.series(settings.series_points)
    done, failed = live.completions()
    registry = live.workers()
    workers = [{**{k: v for k, v in info.items() if k != "partitions"}, "name": name,
                "partitions": json.dumps(info.get("partitions", [])),
                "done_total": done.get(name, 0), "failed_total": failed.get(name, 0)}
               for name, info in sorted(registry.items())]
    for name in sorted((set(done) | set(failed)) - set(registry)):  # never heartbeated, still counted
        workers.append({"name": name, "done_total": done.get(name, 0), "failed_total": failed.get(name, 0)})

    tables = {
        "tasks": tasks,
        "heartbeats": table("heartbeats", heartbeats),
        "failures": table("failures", failures),
        "series": table("series", [{k: v for k, v in s.items() if k not in ("done_by", "failed_by")}
                                   for s in samples]),
        "series_by_worker": table("series_by_worker", series_by_worker(samples)),
        "workers": table("workers", workers),
        "dead_letters": table("dead_letters", live.dead_letters(DLQ_KEPT)[::-1]),
    }
    for name, frame in tables.items():
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        stats.files[name] = len(frame)
    meta = {"exported_at": time.time(), "prefix": settings.prefix, "topic": settings.topic,
            "format": fmt, "counts": counts, "heartbeat_interval": settings.heartbeat_interval,
            "dead_after": settings.dead_after, "tasks": stats.tasks, "limit": limit, "truncated": stats.truncated}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return stats


def table(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows under `COLUMNS[name]` (then any others), whole-number columns as nullable integers."""
    known = list(COLUMNS[name])
    extra = sorted({k for row in rows for k in row} - set(known))
    frame = pd.DataFrame(rows, columns=[*known, *extra])
    for column in frame.columns:
        if column in INTEGERS and _whole(frame[column]):
            frame[column] = frame[column].astype("Int64")
        elif frame[column].map(_nested).any():
            # Nested values (a heartbeat's partition_state, say) as JSON text: Parquet cannot write an
            # empty dict as a struct ("Cannot write struct type ... with no child field"), a CSV would
            # hold Python's repr, and a column may mix shapes from row to row.
            frame[column] = frame[column].map(_as_json)
    return frame


def _nested(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple))


def _as_json(value: Any) -> Any:
    return json.dumps(value) if _nested(value) else value


def _whole(values: pd.Series) -> bool:
    present = values.dropna()
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in present)


def series_by_worker(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long rows (ts, worker, done, failed) from the samples' per-worker counters."""
    rows = []
    for s in samples:
        done, failed = s.get("done_by") or {}, s.get("failed_by") or {}
        for w in sorted(set(done) | set(failed)):
            rows.append({"ts": s["ts"], "worker": w, "done": done.get(w, 0), "failed": failed.get(w, 0)})
    return rows

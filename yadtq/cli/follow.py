"""`yadtq status ID --follow`: one line per change of a task's record, until it ends.

    12:00:01.120  processing  attempt 1 on W1
    12:00:01.371  processing  [#####...............]  25%  resizing
    12:00:02.004  success     result=3

Each line comes when the change is announced (yadtq.store.announcements), not on a timer.
"""

from __future__ import annotations

import json
import time

from yadtq.store.backend import TaskRecord
from yadtq.task.status import Status

BAR = 20


def progress_bar(fraction: float, width: int = BAR) -> str:
    """`[#####...............]  25%`"""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"


def progress_text(rec: TaskRecord) -> str:
    """`[#####...............]  25%  resizing`, or "" for a record without progress."""
    if rec.progress is None:
        return ""
    return progress_bar(rec.progress) + (f"  {rec.progress_message}" if rec.progress_message else "")


def change_line(rec: TaskRecord, at: float | None = None) -> str:
    ts = time.time() if at is None else at
    stamp = f"{time.strftime('%H:%M:%S', time.localtime(ts))}.{int(ts % 1 * 1000):03d}"
    if rec.status == Status.SUCCESS:
        what = f"result={json.dumps(rec.result)}"
    elif rec.done:
        what = f"error={rec.error!r}" if rec.error else ""
    elif rec.status == Status.PROCESSING:
        what = progress_text(rec) or f"attempt {rec.attempts}" + (f" on {rec.worker}" if rec.worker else "")
    else:
        what = f"after {rec.attempts} attempt(s)" if rec.attempts else ""
    return f"{stamp}  {rec.status:<10}  {what}".rstrip()


def follow_line(rec: TaskRecord, as_json: bool = False) -> str:
    """The line to print for one version of the record (`as_json`: a JSON object)."""
    return json.dumps(rec.as_dict()) if as_json else change_line(rec)

"""What the farm learns about a child from its JSON-lines event stream (`<log_dir>/worker-<name>.events.jsonl`).

The farm reads events, not log text: partitions assigned and revoked, the
tasks a child started and has not finished (what it held when it died), and
the lines worth echoing to the operator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FINISHED = ("task_succeeded", "task_failed", "task_retried", "task_fenced", "task_skipped", "task_rejected",
             "task_quarantined", "task_foreign")


@dataclass
class EventTail:
    """Follows one child's event file from where it was when the child started."""

    path: Path
    offset: int = 0
    held: dict[str, str] = field(default_factory=dict)  # task id -> task name, started and not finished
    partitions: list[int] = field(default_factory=list)
    _partial: bytes = b""

    @classmethod
    def at_end(cls, path: Path) -> EventTail:
        """A tail that ignores what earlier incarnations of the same name wrote."""
        try:
            return cls(path, path.stat().st_size)
        except OSError:
            return cls(path, 0)

    def read(self) -> list[dict[str, Any]]:
        """New complete events since the last call (a line still being written waits for the next)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events = []
        for raw in lines:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._note(event)
                events.append(event)
        return events

    def _note(self, e: dict[str, Any]) -> None:
        kind, tid = e.get("event"), e.get("task_id")
        if kind == "task_started" and tid:
            self.held[tid] = str(e.get("task") or "")
        elif kind in _FINISHED and tid:
            self.held.pop(tid, None)
        elif kind == "crash_injected" and tid:
            self.held.setdefault(tid, "")
        elif kind == "partitions_assigned":
            self.partitions = list(e.get("partitions") or [])
        elif kind == "partitions_revoked":
            gone = set(e.get("partitions") or [])
            self.partitions = [p for p in self.partitions if p not in gone]


def describe(e: dict[str, Any]) -> str | None:
    """The line an operator wants for event `e`, or None for events not worth a line."""
    kind, worker = e.get("event"), e.get("worker", "")
    if kind == "partitions_assigned":
        return f"{worker} assigned partitions {e.get('partitions')}"
    if kind == "partitions_revoked" and e.get("partitions"):
        return f"{worker} revoked partitions {e.get('partitions')}"
    if kind == "end_received":
        return f"{worker} reached the end marker on partition {e.get('partition')}"
    if kind == "worker_left":
        return f"{worker} left (done {e.get('done', 0)}, failed {e.get('failed', 0)})"
    if kind == "task_fenced":
        return f"outcome of {e.get('task_id')} discarded: another worker took its claim over"
    if kind == "connection_lost":
        return f"lost {e.get('service', 'a service')}: {e.get('error', '')}"
    return None

"""Progress of running tasks in their records: written only under a current claim.

`ProgressStore.write` stores the latest (fraction, message) of several running
tasks in one script call (`progress.lua`); each is written only while the
caller's claim on it is current and unexpired, so a run that was cut off (its
task reclaimed by another worker, or its lease lapsed) cannot overwrite the
progress of the run that replaced it, nor touch a finished record. The same
step announces the change on the task's channel (yadtq.store.announcements).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yadtq.config import Settings
from yadtq.store.connection import RedisClient
from yadtq.store.keyspace import KeySpace
from yadtq.store.scripts import bind

# Longest progress message stored: it is shown in tables, not a log.
MAX_MESSAGE = 200


@dataclass(frozen=True)
class ProgressReport:
    """The latest progress of one run: its claim (`task_id`, `fence`) and what the task said."""

    task_id: str
    fence: str
    fraction: float
    message: str | None = None


class ProgressStore:
    """Fenced progress writes for one worker incarnation."""

    def __init__(self, client: RedisClient, settings: Settings, incarnation: str) -> None:
        self.space = KeySpace.of(settings)
        self.incarnation = incarnation
        self._progress = bind(client, "progress")

    def write(self, reports: Sequence[ProgressReport]) -> list[bool]:
        """Stores `reports` (one round trip); False where the claim is no longer current (nothing written)."""
        if not reports:
            return []
        stored = [False] * len(reports)
        for k, group in self.space.group(reports, lambda r: r.task_id).items():  # one group on one server
            args: list[str | float] = [self.incarnation]
            for _, r in group:
                args += [r.fence, round(r.fraction, 4), (r.message or "")[:MAX_MESSAGE]]
            got = self._progress(keys=[k.task(r.task_id) for _, r in group], args=args)
            for (i, _), ok in zip(group, got, strict=True):
                stored[i] = bool(ok)
        return stored

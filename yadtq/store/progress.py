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
from yadtq.store.keys import Keys
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
        self.keys = Keys(settings.prefix)
        self.incarnation = incarnation
        self._progress = bind(client, "progress")

    def write(self, reports: Sequence[ProgressReport]) -> list[bool]:
        """Stores `reports` (one round trip); False where the claim is no longer current (nothing written)."""
        if not reports:
            return []
        args: list[str | float] = [self.incarnation]
        for r in reports:
            args += [r.fence, round(r.fraction, 4), (r.message or "")[:MAX_MESSAGE]]
        got = self._progress(keys=[self.keys.task(r.task_id) for r in reports], args=args)
        return [bool(x) for x in got]

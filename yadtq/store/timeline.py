"""What the dashboard's charts plot over a window: the monitor's count samples, the heartbeat log,
and when the oldest queued task entered the queue. Read here once for the dashboard on Redis and
for the API's GET /timeline (the dashboard on the API), so both draw the same points.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from yadtq.config import Settings
from yadtq.store.backend import Backend
from yadtq.store.live_state import LiveState
from yadtq.task.status import Status

# A chart is a few hundred pixels wide: more samples than this draw nothing more.
CHART_POINTS = 360
BEATS = 2_000  # newest heartbeats read at most (the log is capped; the chart shows the window's)


@dataclass
class Timeline:
    series: list[dict[str, Any]]  # count samples, oldest first: ts, one count per status, done_by per worker
    heartbeats: list[dict[str, Any]]  # newest first: ts, worker, state, pid, current_task
    oldest_queued: float | None  # when the task longest queued entered its status (None: none is)


def thin(samples: list[dict[str, Any]], points: int = CHART_POINTS) -> list[dict[str, Any]]:
    """At most about `points` samples, evenly spaced, the newest always kept: rates between the
    kept samples are averages over their longer intervals."""
    step = -(-len(samples) // max(points, 1))
    return samples if step <= 1 else samples[::-1][::step][::-1]


def read(live: LiveState, backend: Backend, settings: Settings, window: float, points: int = CHART_POINTS,
         beats: int = BEATS, now: float | None = None) -> Timeline:
    """The window's samples (thinned to `points`), its heartbeats (of the newest `beats`), the oldest queued."""
    now = time.time() if now is None else now
    wanted = min(settings.series_points, int(window / settings.series_interval) + 2)
    samples = [x for x in live.series(wanted) if x.get("ts", 0) >= now - window]
    return Timeline(series=thin(samples, points),
                    heartbeats=[b for b in live.heartbeats(beats) if b.get("ts", 0) >= now - window],
                    oldest_queued=backend.oldest_entered(Status.QUEUED))

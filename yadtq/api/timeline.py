"""GET /timeline: what the dashboard's Overview charts plot over a window (count samples, heartbeats,
the oldest queued task), read by `yadtq.store.timeline` as the dashboard on Redis reads it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.params import Depends
from pydantic import BaseModel, ConfigDict, Field

from yadtq.client.client import YADTQ
from yadtq.store import timeline


class Sample(BaseModel):
    """The monitor's sample: tasks per status (one field each) and cumulative completions per worker."""

    model_config = ConfigDict(extra="allow")
    ts: float
    done_by: dict[str, int] = Field(default_factory=dict, description="successes per worker so far")
    failed_by: dict[str, int] = Field(default_factory=dict, description="failures per worker so far")


class Beat(BaseModel):
    model_config = ConfigDict(extra="allow")
    ts: float
    worker: str
    state: str | None = None
    pid: int | None = None
    current_task: str | None = None


class TimelineOut(BaseModel):
    series: list[Sample] = Field(description="count samples in the window, oldest first, evenly thinned to `points`")
    heartbeats: list[Beat] = Field(description="heartbeats in the window, newest first")
    oldest_queued: float | None = Field(description="when the task queued longest entered the queue (epoch s)")


def timeline_routes(q: YADTQ, auth: list[Depends]) -> APIRouter:
    router = APIRouter(tags=["stats"], dependencies=list(auth))

    @router.get("/timeline", response_model=TimelineOut,
                summary="Tasks per status and heartbeats over a window (the dashboard's charts)")
    def read_timeline(window: Annotated[float, Query(gt=0, le=86_400, allow_inf_nan=False,
                                                     description="seconds back from now")] = 900.0,
                      points: Annotated[int, Query(ge=2, le=3_600, description="samples at most")]
                      = timeline.CHART_POINTS) -> dict[str, Any]:
        t = timeline.read(q.live, q.backend, q.settings, window, points)
        return {"series": t.series, "heartbeats": t.heartbeats, "oldest_queued": t.oldest_queued}

    return router

"""The API's periodic schedules: GET /schedules (with next and last run), POST /schedules, DELETE
/schedules/{name}. `add_routes(app, q, auth)` adds them to the application."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException

from yadtq.api.models import _encodable, _finite
from yadtq.client.client import YADTQ
from yadtq.errors import ConfigError
from yadtq.task.messages import MAX_TASK_NAME

ScheduleName = Annotated[str, Path(min_length=1, max_length=100, description="the schedule's name")]


class ScheduleRequest(BaseModel):
    """A schedule: `task` with `args`/`kwargs`, every `every` seconds or at the times of `cron` (UTC)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "report-10s", "task": "add", "args": [1, 2], "every": 10},
        {"name": "nightly", "task": "add", "args": [1, 2], "cron": "0 3 * * *", "catch_up": "skip"}]})

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
                      description="schedule name; adding a name again replaces it (its last run is kept)")
    task: str = Field(min_length=1, max_length=MAX_TASK_NAME, description="registered task name")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    every: int | None = Field(default=None, ge=1, le=366 * 86_400, strict=True,
                              description="seconds between slots (slots are multiples of it since the epoch)")
    cron: str | None = Field(default=None, min_length=1, max_length=200, description="cron expression, in UTC")
    catch_up: Literal["once", "skip"] = Field(
        default="once", description="a slot missed while nothing ran: fired once, late, or skipped")
    unchecked: bool = Field(default=False, strict=True,
                            description="add it without checking the call against what live workers serve")

    @field_validator("args", "kwargs")
    @classmethod
    def _json_only(cls, value: Any) -> Any:
        return _finite(value)

    @field_validator("task", "cron")
    @classmethod
    def _utf8(cls, value: str | None) -> str | None:
        return _encodable(value)

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleRequest:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of every and cron")
        return self


class ScheduleOut(BaseModel):
    name: str
    task: str
    every: int | None
    cron: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    catch_up: str
    next_run: float = Field(description="Redis time of the next slot")
    last_run: float | None = Field(description="when its last slot fired (Redis time), if ever")
    last_slot: float = Field(description="the latest slot fired or passed (a new schedule: the slot it began in)")
    last_task: str | None = Field(description="the task id of the last slot fired")
    fired: int
    skipped: int
    origin: str = Field(description="decorator (@periodic, registered by a worker) or runtime")


class Removed(BaseModel):
    name: str
    removed: bool


def add_routes(app: FastAPI, q: YADTQ, auth: list[Any]) -> None:
    @app.get("/schedules", response_model=list[ScheduleOut], dependencies=auth, tags=["schedules"],
             summary="Periodic schedules with their next and last run")
    def schedules() -> list[dict[str, Any]]:
        return [s.as_dict() for s in q.schedules()]

    @app.post("/schedules", status_code=201, response_model=ScheduleOut, dependencies=auth, tags=["schedules"],
              summary="Add a periodic schedule (or replace the one of that name)")
    def add_schedule(body: ScheduleRequest) -> dict[str, Any]:
        try:
            state = q.add_schedule(body.name, body.task, every=body.every, cron=body.cron, args=body.args,
                                   kwargs=body.kwargs, catch_up=body.catch_up, unchecked=body.unchecked)
        except ConfigError as exc:
            raise HTTPException(422, str(exc)) from None
        return state.as_dict()

    @app.delete("/schedules/{name}", response_model=Removed, dependencies=auth, tags=["schedules"],
                summary="Remove a periodic schedule (tasks it fired already stay)")
    def remove_schedule(name: ScheduleName) -> Removed:
        if not q.remove_schedule(name):
            raise HTTPException(404, f"no schedule named {name!r}")
        return Removed(name=name, removed=True)

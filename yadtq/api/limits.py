"""The HTTP API's limits: list the farm-wide rate and concurrency limits, set them, reset them.

    GET    /limits              every task name with limits
    PUT    /limits/{task}       {"rate_limit": "10/s", "max_concurrency": 3} (null: no limit; absent: unchanged)
    DELETE /limits/{task}       drop what was set at run time (the decorator's limits apply again)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path
from fastapi.params import Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from yadtq.client.client import YADTQ
from yadtq.errors import ConfigError
from yadtq.store.limits import UNSET
from yadtq.task.limits import parse_rate
from yadtq.task.messages import MAX_TASK_NAME

TaskName = Annotated[str, Path(min_length=1, max_length=MAX_TASK_NAME, description="the task's name")]
From = Literal["code", "set"] | None


class LimitOut(BaseModel):
    task: str
    rate_limit: str | None = Field(description="farm-wide starts per second/minute/hour, e.g. 10/s")
    max_concurrency: int | None = Field(description="farm-wide runs at once")
    key_concurrency: int | None = Field(description="runs at once per ordering key (decorator only)")
    rate_limit_from: From = Field(description="code: a worker's decorator; set: at run time")
    max_concurrency_from: From
    key_concurrency_from: From
    running: int = Field(description="runs counted against max_concurrency now")


class LimitSet(BaseModel):
    """Only the fields given change; null means no limit (over the decorator's)."""

    model_config = ConfigDict(extra="forbid")
    rate_limit: str | None = Field(default=None, examples=["10/s", "100/m", "5/h"])
    max_concurrency: int | None = Field(default=None, ge=1, examples=[3])

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_rate(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


def add_limit_routes(app: FastAPI, q: YADTQ, auth: list[Depends]) -> None:
    @app.get("/limits", response_model=list[LimitOut], dependencies=auth, tags=["limits"],
             summary="Farm-wide rate and concurrency limits, per task name")
    def limits() -> list[dict[str, Any]]:
        return q.limits()

    @app.put("/limits/{task}", response_model=LimitOut, dependencies=auth, tags=["limits"],
             summary="Set a task's rate_limit and/or max_concurrency at run time (null: no limit)")
    def set_limit(task: TaskName, body: LimitSet) -> dict[str, Any]:
        given = body.model_fields_set
        return q.set_limit(task, rate_limit=body.rate_limit if "rate_limit" in given else UNSET,
                           max_concurrency=body.max_concurrency if "max_concurrency" in given else UNSET)

    @app.delete("/limits/{task}", response_model=LimitOut, dependencies=auth, tags=["limits"],
                summary="Drop the limits set at run time: the decorator's apply again")
    def reset_limit(task: TaskName) -> dict[str, Any]:
        return q.set_limit(task, reset=True)

"""Request and response bodies of the HTTP API (they are also its OpenAPI schema)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, field_validator

from yadtq.store.backend import TaskRecord
from yadtq.task.messages import MAX_TASK_NAME
from yadtq.task.status import STATUSES, Status

# The schema lists the names as a plain string enum (what clients generated from it expect).
StatusName = Literal["scheduled", "queued", "processing", "success", "failed", "cancelled", "expired"]
assert StatusName.__args__ == STATUSES  # type: ignore[attr-defined]  # one list of statuses
MAX_BATCH = 1_000
MAX_WAIT = 30.0
_DEPTH = 32


def _finite(value: Any, depth: int = 0) -> Any:
    """JSON that other clients can read back: no NaN/Infinity, no lone surrogates, bounded nesting."""
    if depth > _DEPTH:
        raise ValueError(f"nested deeper than {_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON")
    if isinstance(value, str):
        _encodable(value)
    elif isinstance(value, list):
        for v in value:
            _finite(v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            _encodable(k)
            _finite(v, depth + 1)
    return value


def _encodable(value: str | None) -> str | None:
    """Text Redis can store: a lone surrogate (valid in a JSON escape) is not UTF-8."""
    if value is not None:
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("not valid Unicode text (lone surrogate)") from None
    return value


class SubmitRequest(BaseModel):
    """One task: the options of `YADTQ.submit`, plus an ordering `key`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"task": "add", "args": [1, 2]}, {"task": "sleep", "args": [1.5], "tries": 2, "key": "user-7"}]})

    task: str = Field(min_length=1, max_length=MAX_TASK_NAME, description="registered task name")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # strict: JSON true is not a number of tries or seconds (pydantic's lax mode would read it as 1)
    tries: int | None = Field(default=None, ge=1, le=1000, strict=True,
                              description="attempts at most (default: the server's)")
    time_limit: float | None = Field(default=None, gt=0, le=86_400 * 7, allow_inf_nan=False, strict=True,
                                     description="seconds one attempt may run")
    task_id: str | None = Field(default=None, min_length=1, max_length=200,
                                description="your own id (default: a new uuid4); resubmitting an id is idempotent")
    result_ttl: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True,
                                     description="seconds its finished record is kept (0: forever; default: "
                                                 "the task's own, else the server's YADTQ_RESULT_TTL)")
    unchecked: bool = Field(default=False, strict=True,
                            description="send it without checking it against the tasks live workers serve "
                                        "(for a task only a future worker will know)")
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,100}$",
                              description="named queue (default: the task's own, else 'default')")
    countdown: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True,
                                    description="run it no sooner than this many seconds from now (`scheduled` "
                                                "until then)")
    # StrictFloat, as `strict=True` on the other numbers (which a union cannot take): a JSON `true` is no time.
    eta: StrictFloat | str | None = Field(
        default=None, description="run it no sooner than this time: epoch seconds or ISO-8601 (UTC unless it says)")
    expires: StrictFloat | str | None = Field(
        default=None, description="not started within this many seconds (or by this ISO-8601 time), it ends `expired`")

    @field_validator("args", "kwargs")
    @classmethod
    def _json_only(cls, value: Any) -> Any:
        return _finite(value)

    @field_validator("task", "task_id")
    @classmethod
    def _utf8(cls, value: str | None) -> str | None:
        return _encodable(value)


class KeyedSubmitRequest(SubmitRequest):
    """A task with an optional ordering key (offered when the client library supports keys)."""

    key: str | None = Field(default=None, min_length=1, max_length=200,
                            description="ordering key: tasks with one key run one at a time, in order")

    @field_validator("key")
    @classmethod
    def _utf8_key(cls, value: str | None) -> str | None:
        return _encodable(value)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[SubmitRequest] = Field(min_length=1, max_length=MAX_BATCH)


class KeyedBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[KeyedSubmitRequest] = Field(min_length=1, max_length=MAX_BATCH)


class Submitted(BaseModel):
    task_id: str
    status: str


class BatchSubmitted(BaseModel):
    task_ids: list[str]


class TaskOut(BaseModel):
    """A task's record. Times are epoch seconds (UTC); durations are seconds."""

    task_id: str
    task: str
    status: str
    args: list[Any]
    kwargs: dict[str, Any]
    result: Any = None
    error: str | None = None
    attempts: int
    tries: int | None = None
    worker: str | None = None
    partition: int | None = None
    key: str | None = Field(default=None, description="ordering key (every publish of the task goes with it)")
    queue: str = "default"
    submitted: float | None = None
    started: float | None = None
    finished: float | None = None
    run_time: float | None = Field(default=None, description="finished - started (the last attempt)")
    queue_wait: float | None = Field(default=None, description="started - submitted")
    progress: float | None = Field(default=None, description="what the task last reported: a fraction 0..1")
    progress_message: str | None = Field(default=None, description="and what it said it was doing")
    done: bool

    @classmethod
    def of(cls, rec: TaskRecord) -> TaskOut:
        run = rec.finished - rec.started if rec.finished and rec.started and rec.status != Status.CANCELLED else None
        wait = rec.started - rec.submitted if rec.started and rec.submitted else None
        return cls(task_id=rec.task_id, task=rec.task, status=rec.status, args=list(rec.args),
                   kwargs=dict(rec.kwargs), result=rec.result, error=rec.error, attempts=rec.attempts,
                   tries=rec.tries, worker=rec.worker, partition=rec.partition, key=rec.key, queue=rec.queue,
                   submitted=rec.submitted,
                   started=rec.started, finished=rec.finished, run_time=run, queue_wait=wait, done=rec.done,
                   progress=rec.progress, progress_message=rec.progress_message)


class HistoryEntry(BaseModel):
    time: float
    event: str


class TaskDetail(TaskOut):
    history: list[HistoryEntry] = Field(description="what the record's timestamps cannot tell (retries, requeues)")
    waiting_because: str | None = Field(default=None, description="for a queued task: why it has not started")


class ResultOut(BaseModel):
    task_id: str
    status: str
    done: bool
    result: Any = None
    error: str | None = None


class QueueOut(BaseModel):
    """One named queue's figures, counted in Redis."""

    queue: str
    queued: int = Field(description="tasks waiting in it now")
    lag: float | None = Field(description="seconds the oldest waiting task has waited (null: none waits)")
    throughput: float = Field(description="tasks finished per second over the window (estimated from a sample)")
    dead_letters: int


class TaskPage(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null when no more match")
    scanned: int = Field(description="index entries examined for this page (bounded by `budget`)")


class Counts(BaseModel):
    model_config = ConfigDict(extra="allow")
    scheduled: int = 0
    queued: int
    processing: int
    success: int
    failed: int
    cancelled: int
    expired: int = 0


class TypeRow(BaseModel):
    task: str
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float | None
    run_p50: float | None
    run_p95: float | None
    wait_p50: float | None
    wait_p95: float | None


class Stats(BaseModel):
    counts: Counts
    window: float
    finished_in_window: dict[str, int]
    sampled: int = Field(description="finished tasks read for the per-type figures")
    complete: bool = Field(description="false when the figures come from a sample of the window")
    types: list[TypeRow]


class Worker(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    status: str | None = None
    state: str | None = None
    host: str | None = None
    pid: int | None = None
    concurrency: int | None = None
    slots_in_use: int
    running: list[str]
    partitions: list[int] = Field(default_factory=list)
    last_heartbeat: float | None = None
    done: int
    failed: int


class Partition(BaseModel):
    partition: int
    owner: str | None = Field(description="null when no live worker owns it")
    committed: int | None = None
    in_broker: int | None = Field(default=None, description="records past the committed position not read yet")
    buffered: int
    running: int
    paused: bool
    waiting: dict[str, int]
    why: str


class CommandOut(BaseModel):
    worker: str
    command: Literal["pause", "resume", "stop"]
    queued: bool


class ErrorOut(BaseModel):
    error: str
    detail: Any = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    auth: bool = Field(description="whether a bearer token guards the API")
    waiting: str | None = Field(default=None, description="why no task can start now (workers still joining "
                                "their group, none alive), from the worker registry; null when a worker serves")

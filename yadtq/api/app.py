"""The HTTP API: submit, follow, cancel and requeue tasks; workers, failures, stats, metrics.

`create_app(settings)` builds the FastAPI application; it takes its
collaborators as arguments so tests run it against real services. Every read
goes through the library's bounded read API (`yadtq.store.search`, the backend, the
live state); every error is JSON `{"error": ...}` with a fitting status code:
400 for a body that is not JSON, 422 for JSON that is not a valid request.
The /docs (Swagger UI) and /redoc pages load their scripts from this server
(`docs_pages`), so they work without internet.
"""

import hmac
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from yadtq.api import events
from yadtq.api import models as m
from yadtq.api.docs_pages import add_docs_pages
from yadtq.api.limits import add_limit_routes
from yadtq.api.metrics import Metrics
from yadtq.api.purge import purge_routes
from yadtq.api.schedules import add_routes as add_schedule_routes
from yadtq.api.timeline import timeline_routes
from yadtq.api.workflow_list import workflow_list_routes
from yadtq.api.workflows import workflow_routes
from yadtq.broker.backlog import for_settings as backlog_for
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import ConnectError, MessageError, SubmissionRefused, TaskNotFound, YADTQError
from yadtq.store import search
from yadtq.store.backend import TaskNotCancellable
from yadtq.store.connection import RedisError
from yadtq.store.worker_commands import COMMANDS
from yadtq.task.messages import TaskMessage
from yadtq.task.status import STATUSES, Status

log = logging.getLogger(__name__)
TaskId = Annotated[str, Path(min_length=1, max_length=200, description="the task's id")]
WorkerName = Annotated[str, Path(min_length=1, max_length=200)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": m.ErrorOut, "description": text} for code, text in (
        (400, "a body that is not JSON"), (401, "missing or wrong bearer token"),
        (404, "no such task or worker"), (409, "not in a state that allows it"),
        (422, "JSON that is not a valid request (or a task no live worker serves, or arguments that fit "
               "no signature they announced), or invalid parameters"), (503, "Redis or the broker is unavailable"))
}


BEARER = HTTPBearer(auto_error=False, description="YADTQ_API_TOKEN, when the server has one")


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def create_app(settings: Settings, client: YADTQ | None = None) -> FastAPI:
    """The application. Without `client` it connects to Redis at start (the broker on first submit)."""
    q = client or YADTQ(settings)
    backlog = backlog_for(settings)
    metrics = Metrics(q.backend, q.live, backlog)
    app = FastAPI(
        title="YADTQ", version="1.0",
        description="Submit, follow and cancel tasks of a YADTQ farm; its workers, failures and figures. "
                    "Times are epoch seconds (UTC). With a server token, send `Authorization: Bearer <token>`.",
        responses=ERRORS, docs_url=None, redoc_url=None)
    add_docs_pages(app)  # served from this server's own copies of the scripts: they work offline
    app.state.client = q
    if backlog:
        app.router.on_shutdown.append(backlog.close)

    def guard(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), settings.api_token.encode()):
            raise ApiError(401, "missing or wrong bearer token")

    # Without a token the server listens on loopback only, and its schema declares no security.
    auth = [Depends(guard)] if settings.api_token else []
    _handlers(app)

    @app.get("/health", response_model=m.Health, tags=["service"], summary="Is Redis answering")
    def health() -> JSONResponse:
        ok = q.redis_answers()
        body = m.Health(status="ok" if ok else "degraded", redis=ok, auth=bool(settings.api_token),
                        waiting=q.waiting_note() if ok else None)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    # -- submit ----------------------------------------------------------------
    # Ordering keys are offered once the client library has them, so the schema never promises what fails.
    keyed = "key" in inspect.signature(q.message).parameters
    one = m.KeyedSubmitRequest if keyed else m.SubmitRequest
    many = m.KeyedBatchRequest if keyed else m.BatchRequest

    @app.post("/tasks", status_code=201, response_model=m.Submitted, dependencies=auth, tags=["tasks"],
              summary="Submit one task")
    def submit(body: one) -> m.Submitted:  # type: ignore[valid-type]
        message = _message(q, body)
        tid = q.publish([message], wait=True)[0]
        return m.Submitted(task_id=tid, status=q.status(tid).status if message.timing.delayed else Status.QUEUED)

    @app.post("/tasks/batch", status_code=201, response_model=m.BatchSubmitted, dependencies=auth, tags=["tasks"],
              summary="Submit many tasks (one Redis pipeline, one broker flush)")
    def submit_many(body: many) -> m.BatchSubmitted:  # type: ignore[valid-type]
        tasks = body.tasks  # type: ignore[attr-defined]
        return m.BatchSubmitted(task_ids=q.publish([_message(q, t) for t in tasks], wait=True))

    app.include_router(workflow_routes(q, auth))  # POST /workflows, GET /workflows/{id}
    app.include_router(workflow_list_routes(q, auth))  # GET /workflows
    app.include_router(purge_routes(q, auth))  # POST /tasks/purge
    app.include_router(timeline_routes(q, auth))  # GET /timeline

    # -- follow ----------------------------------------------------------------
    @app.get("/tasks", response_model=m.TaskPage, dependencies=auth, tags=["tasks"],
             summary="List and search tasks, newest first, with cursor paging")
    def list_tasks(
        status: Annotated[list[m.StatusName] | None,
                          Query(description=f"any of {', '.join(STATUSES)}; repeat for several (default all)")] = None,
        task: Annotated[str | None, Query(max_length=200, description="task name (exact)")] = None,
        worker: Annotated[str | None, Query(max_length=200, description="worker name (exact)")] = None,
        error: Annotated[str | None, Query(max_length=500, description="text in the error (any case)")] = None,
        since: Annotated[float | None, Query(allow_inf_nan=False,
                                             description="entered its status at or after (epoch s)")] = None,
        until: Annotated[float | None, Query(allow_inf_nan=False,
                                             description="entered its status at or before (epoch s)")] = None,
        limit: Annotated[int, Query(ge=1, le=search.MAX_LIMIT)] = 50,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
        budget: Annotated[int, Query(ge=1, le=search.MAX_BUDGET,
                                     description="index entries to examine at most")] = search.DEFAULT_BUDGET,
    ) -> m.TaskPage:
        query = search.TaskQuery(statuses=tuple(status or STATUSES), task=task or None, worker=worker or None,
                                 error=error or None, since=since, until=until)
        page = search.search(q.backend, query, limit=limit, cursor=cursor or None, budget=budget)
        return m.TaskPage(tasks=[m.TaskOut.of(r) for r in page.tasks], next_cursor=page.next_cursor,
                          scanned=page.scanned)

    @app.get("/tasks/{task_id}", response_model=m.TaskDetail, dependencies=auth, tags=["tasks"],
             summary="A task's record, history and, if queued, why it waits")
    def task_detail(task_id: TaskId) -> m.TaskDetail:
        rec = q.backend.get(task_id)
        history = q.backend.events(task_id)
        why = search.why_queued(rec, search.workers(q.live), history) if rec.status == Status.QUEUED else None
        return m.TaskDetail(**m.TaskOut.of(rec).model_dump(), waiting_because=why,
                            history=[m.HistoryEntry(time=ts, event=text) for ts, text in history])

    @app.get("/tasks/{task_id}/result", response_model=m.ResultOut, dependencies=auth, tags=["tasks"],
             responses={202: {"model": m.ResultOut, "description": "not finished within `wait`"}},
             summary="A task's outcome, waiting up to `wait` seconds for it")
    async def result(task_id: TaskId,
                     wait: Annotated[float, Query(ge=0, le=m.MAX_WAIT, allow_inf_nan=False,
                                                  description="seconds to wait for the outcome")] = 0.0
                     ) -> JSONResponse:
        rec = await events.wait_record(q, task_id, wait)  # woken when the outcome is stored
        body = m.ResultOut(task_id=task_id, status=rec.status, done=rec.done, result=rec.result, error=rec.error)
        return JSONResponse(body.model_dump(), status_code=200 if rec.done else 202)

    @app.get("/tasks/{task_id}/events", dependencies=auth, tags=["tasks"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
             summary="A task's changes (status, progress) as server-sent events, until it ends")
    def task_events(task_id: TaskId, timeout: Annotated[float, Query(gt=0, le=events.MAX_STREAM, allow_inf_nan=False,
                    description="end the stream after this many seconds")] = 300.0) -> StreamingResponse:
        return events.task_events(q, task_id, timeout)

    # -- act ----------------------------------------------------------------
    @app.post("/tasks/{task_id}/cancel", response_model=m.TaskOut, dependencies=auth, tags=["tasks"],
              summary="Cancel a task: waiting, it never runs; running, it is interrupted; 409 once finished")
    def cancel(task_id: TaskId) -> m.TaskOut:
        return m.TaskOut.of(q.cancel(task_id, by="api"))

    @app.post("/tasks/{task_id}/requeue", response_model=m.Submitted, dependencies=auth, tags=["tasks"],
              summary="Run a failed task again from its record (fresh attempts)")
    def requeue(task_id: TaskId) -> m.Submitted:
        return m.Submitted(task_id=q.requeue(task_id), status=Status.QUEUED)

    add_limit_routes(app, q, auth)

    # -- the farm ----------------------------------------------------------------
    @app.get("/workers", response_model=list[m.Worker], dependencies=auth, tags=["workers"],
             summary="Workers: status, host, pid, slots, running tasks, partitions")
    def workers(prune_after: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description=(
            "leave out workers not alive for longer than this many seconds"))] = None) -> list[dict[str, Any]]:
        return search.workers(q.live, prune_after=prune_after)

    @app.post("/workers/{name}/{command}", status_code=202, response_model=m.CommandOut, dependencies=auth,
              tags=["workers"], summary="Pause, resume or stop one worker (taken within about a second)")
    def control(name: WorkerName, command: Annotated[str, Path(description=" | ".join(COMMANDS))]) -> m.CommandOut:
        if command not in COMMANDS:
            raise ApiError(404, f"unknown command {command!r}; one of {', '.join(COMMANDS)}")
        if name not in q.live.workers():
            raise ApiError(404, f"no worker named {name!r} in the registry")
        q.command_worker(name, command)
        return m.CommandOut(worker=name, command=command, queued=True)  # type: ignore[arg-type]

    @app.get("/partitions", response_model=list[m.Partition], dependencies=auth, tags=["workers"],
             summary="Partitions of live workers: owner, committed position, backlog, why tasks wait")
    def partitions() -> list[dict[str, Any]]:
        return search.partitions(search.workers(q.live), backlog.end_offsets() if backlog else None)

    @app.get("/failures", response_model=list[dict[str, Any]], dependencies=auth, tags=["workers"],
             summary="Worker deaths, newest first, with the tasks each held")
    def failures(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return q.live.failures(limit)

    @app.get("/dead-letters", response_model=list[dict[str, Any]], dependencies=auth, tags=["tasks"],
             summary="Records that could not be run, newest first")
    def dead_letters(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     queue: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,100}$",
                                                        description="a named queue's")] = None) -> list[dict[str, Any]]:
        return q.live.dead_letters(limit, queue)

    @app.get("/queues", response_model=list[m.QueueOut], dependencies=auth, tags=["stats"],
             summary="Per named queue: tasks waiting, lag, throughput, dead letters")
    def queues(window: Annotated[float, Query(gt=0, le=86_400, allow_inf_nan=False,
                                              description="throughput over this many seconds")] = 60.0,
               ) -> list[dict[str, Any]]:
        return [r.as_dict() for r in q.queues(window)]

    @app.get("/counts", response_model=m.Counts, dependencies=auth, tags=["stats"], summary="Tasks by status")
    def counts() -> dict[str, int]:
        return q.backend.counts()

    @app.get("/stats", response_model=m.Stats, dependencies=auth, tags=["stats"],
             summary="Per task type: count, success rate, run time and queue wait p50/p95 over a window")
    def stats(window: Annotated[float, Query(gt=0, le=86_400 * 31, allow_inf_nan=False,
                                             description="seconds back from now")] = 3600.0,
              sample: Annotated[int, Query(ge=1, le=search.MAX_BUDGET)] = search.DEFAULT_SAMPLE) -> dict[str, Any]:
        report = search.type_stats(q.backend, window, sample)
        return {"counts": q.backend.counts(), **report.as_dict()}

    add_schedule_routes(app, q, auth)  # GET, POST /schedules, DELETE /schedules/{name}

    @app.get("/metrics", dependencies=auth, tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
             summary="Prometheus metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _message(q: YADTQ, body: m.SubmitRequest) -> TaskMessage:
    options: dict[str, Any] = {"tries": body.tries, "time_limit": body.time_limit, "task_id": body.task_id,
                               "unchecked": body.unchecked, "countdown": body.countdown, "eta": body.eta,
                               "expires": body.expires, "result_ttl": body.result_ttl, "queue": body.queue}
    key = getattr(body, "key", None)
    if key is not None:
        options["key"] = key
    return q.message(body.task, body.args, body.kwargs, **options)


def _handlers(app: FastAPI) -> None:
    def reply(status: int, message: str, detail: Any = None) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": message, "detail": detail}, status_code=status, headers=headers)

    table: list[tuple[type[Exception], Callable[[Exception], JSONResponse]]] = [
        (ApiError, lambda e: reply(e.status, e.message, e.detail)),  # type: ignore[attr-defined]
        (TaskNotFound, lambda e: reply(404, str(e))),
        (TaskNotCancellable, lambda e: reply(409, str(e))),
        (SubmissionRefused, lambda e: reply(422, f'{e}; nothing sent ("unchecked": true sends it anyway)')),
        (MessageError, lambda e: reply(422, str(e))),
        (search.SearchError, lambda e: reply(422, str(e))),
        (ConnectError, lambda e: reply(503, str(e))),
        (RedisError, lambda e: reply(503, f"Redis unavailable: {e}")),
        # What remains of the library's errors is a request the state does not allow (requeue a success).
        (YADTQError, lambda e: reply(409, str(e))),
    ]
    for kind, make in table:
        app.add_exception_handler(kind, _adapt(make))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in errors[:20]]
        unparsed = _unparsed_body(errors)
        if unparsed:
            return reply(400, f"body cannot be parsed: {unparsed}", detail)
        return reply(422, f"invalid request: {where}: {first.get('msg', 'bad input')}", detail)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        code = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        return reply(code, str(exc.detail) if isinstance(exc, StarletteHTTPException) else "error")

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _unparsed_body(errors: Sequence[Any]) -> str | None:
    """Why the body is not JSON at all (a 400), or None when it parsed and only failed validation (a 422).

    FastAPI reports both as validation errors: a decode error as `json_invalid`,
    and a body sent as another content type arrives as raw bytes.
    """
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            reason = (e.get("ctx") or {}).get("error") or e.get("msg", "JSON decode error")
            return f"not JSON ({reason}{f' at character {loc[1]}' if len(loc) > 1 else ''})"
        if loc == ("body",) and isinstance(e.get("input"), (bytes, bytearray)):
            return "not read as JSON (send it with content-type: application/json)"
    return None


def _adapt(make: Callable[[Exception], JSONResponse]) -> Callable[[Request, Exception], Any]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return make(exc)
    return handler

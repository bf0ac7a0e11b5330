"""The asyncio client: `YADTQ`'s submit-and-track API for async code (FastAPI handlers, aiohttp...).

    async with AsyncYADTQ.from_env() as q:
        tid = await q.submit("add", [1, 2])
        await q.result(tid, timeout=10)          # -> 3

Redis through redis-py's asyncio client (yadtq.store.async_backend: the same Lua scripts and
keys as the blocking client), Kafka through `AsyncPublisher` (the producer's threads, never the
loop's), and `wait`/`result` woken by the record's announcements. The rules are `YADTQ`'s: the
`queued` record is written before the message is published; a submit whose publishing fails is
undone and raises; submitting again with the same id is idempotent.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from yadtq.client.async_changes import async_follow, async_wait_done
from yadtq.client.async_publish import AsyncPublisher
from yadtq.client.async_workflows import AsyncWorkflows
from yadtq.client.building import TaskSpec, make_message, resolve_queue, spec_call, validate_call
from yadtq.client.edge_check import EdgeCheck
from yadtq.client.workflows import workflow_record
from yadtq.config import Settings
from yadtq.errors import TaskFailed
from yadtq.store.async_announcements import AsyncAnnouncements
from yadtq.store.async_backend import AsyncBackend, AsyncRedisClient, connect_async_redis
from yadtq.store.async_workflows import AsyncWorkflowStore
from yadtq.store.backend import TaskRecord
from yadtq.store.keys import Keys
from yadtq.store.retention import check_result_ttl
from yadtq.store.workflows import WorkflowState, is_workflow_id
from yadtq.task.canvas import Canvas, Signature, signature
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status
from yadtq.task.timing import Timing, When
from yadtq.task.trace_context import headers, submit_span


class AsyncYADTQ:
    """Connects on `async with` (or `await q.connect()`); `aclose()` when not used as a context manager."""

    # `publisher`: anything with AsyncPublisher's `send` and `close` (the engine tests hand it
    # their in-memory task source); by default Kafka's.
    def __init__(self, settings: Settings, *, create_topic: bool = True, publisher: Any = None) -> None:
        self.settings = settings
        self.publisher = publisher or AsyncPublisher(settings, create_topic)
        self.edge = EdgeCheck(None, Keys(settings.prefix))
        self._redis: AsyncRedisClient | None = None
        self._backend: AsyncBackend | None = None
        self._announcements: AsyncAnnouncements | None = None
        self._workflows: AsyncWorkflows | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> AsyncYADTQ:
        return cls(Settings.from_env(**overrides))

    async def connect(self) -> AsyncYADTQ:
        """Connects to Redis (raises `BackendUnavailable`); the broker is met on the first submit."""
        if self._redis is None:
            self._redis = await connect_async_redis(self.settings)
            self._backend = AsyncBackend(self._redis, self.settings)
            self._announcements = AsyncAnnouncements(self._redis, self._backend.keys, self._backend.space)
            self._workflows = AsyncWorkflows(AsyncWorkflowStore(self._redis, self.settings), self._served,
                                             self._send, self.settings.tries, self._announcements,
                                             self.edge.queue_of)
        return self

    async def aclose(self) -> None:
        await self.publisher.close()
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    async def __aenter__(self) -> AsyncYADTQ:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def backend(self) -> AsyncBackend:
        if self._backend is None:
            raise RuntimeError("AsyncYADTQ is not connected: use `async with` or `await q.connect()`")
        return self._backend

    # -- submit ------------------------------------------------------------
    async def message(self, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
                      tries: int | None = None, time_limit: float | None = None, task_id: str | None = None,
                      key: str | None = None, unchecked: bool = False, countdown: float | None = None,
                      eta: When | None = None, expires: When | None = None, result_ttl: float | None = None,
                      queue: str | None = None) -> TaskMessage:
        """`YADTQ.message`: a validated message (delayed by `countdown`/`eta`, expiring at `expires`,
        kept `result_ttl` seconds once finished, sent to `queue` or its task's declared queue),
        checked against what live workers serve unless `unchecked`."""
        validate_call(task, args, tries, key)
        check_result_ttl(result_ttl)
        if not unchecked:
            await self._served()
            self.edge.check(task, args, kwargs or {})
        return make_message(self.settings, task, args, kwargs, tries=tries, time_limit=time_limit,
                            task_id=task_id, key=key, timing=Timing.of(countdown, eta, expires, task_id),
                            result_ttl=result_ttl, queue=resolve_queue(task, queue, self.edge.queue_of))

    async def submit(self, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                     **options: Any) -> str:
        """Records the task as queued, publishes it, waits for the broker's ack; returns its id
        (`link=`/`link_error=`: callbacks, as `YADTQ.submit`)."""
        link, link_error = options.pop("link", None), options.pop("link_error", None)
        if link is not None or link_error is not None:
            return await self.workflows.submit_linked(await self.message(task, args, kwargs, **options), link,
                                                      link_error)
        return (await self.publish([await self.message(task, args, kwargs, **options)]))[0]

    async def submit_many(self, specs: Iterable[TaskSpec], *, unchecked: bool = False) -> list[str]:
        """Bulk submit: one Redis pipeline, the acks awaited together."""
        messages = []
        for spec in specs:
            if isinstance(spec, TaskMessage):
                messages.append(spec)
                continue
            task, args, kwargs, options = spec_call(spec, unchecked)
            messages.append(await self.message(task, args, kwargs, **options))
        return await self.publish(messages)

    async def publish(self, messages: Sequence[TaskMessage]) -> list[str]:
        """`YADTQ.publish` (always waiting for the acks): all or nothing; returns the ids."""
        with submit_span([m.task_id for m in messages], [m.task for m in messages]):
            token = uuid.uuid4().hex
            verdicts = await self.backend.record_queued(messages, self.settings.tries, token)
            made = [m.task_id for m, v in zip(messages, verdicts, strict=True) if v in ("new", Status.SCHEDULED)]
            to_send = [m for m, v in zip(messages, verdicts, strict=True) if v in ("new", Status.QUEUED)]
            try:
                await self._send(to_send)
            except BaseException:
                await self.backend.unsubmit(made, token)
                raise
        return [m.task_id for m in messages]

    async def _send(self, messages: Sequence[TaskMessage]) -> None:
        await self.publisher.send(messages, headers())  # the current span's context (yadtq[otel])

    async def _served(self) -> dict[str, list[dict[str, Any]]]:
        if self.edge.due():
            self.edge.update(await self.backend.live_served())
        return self.edge.served()

    # -- track -------------------------------------------------------------
    async def status(self, task_id: str) -> TaskRecord:
        """The stored record; raises `TaskNotFound` for an unknown id."""
        return await self.backend.get(task_id)

    async def wait(self, task_id: str, timeout: float | None = None,
                   poll: float | None = None) -> TaskRecord:
        """Waits for a final status, woken when it is stored; raises `ResultTimeout`, `TaskNotFound`.
        A workflow's id: waits for the workflow to end (success or failed); the record has its status,
        result and error (its nodes: `workflow(id)`)."""
        if is_workflow_id(task_id) and await self.workflows.store.exists(task_id):
            return workflow_record(await self.workflows.wait(task_id, timeout, poll or self.settings.result_poll))
        return await self._wait_task(task_id, timeout, poll)

    async def _wait_task(self, task_id: str, timeout: float | None, poll: float | None = None) -> TaskRecord:
        backend = self.backend  # raises when not connected
        assert self._announcements is not None
        return await async_wait_done(backend, self._announcements, task_id, timeout,
                                     poll or self.settings.result_poll)

    async def follow(self, task_id: str, timeout: float | None = None) -> AsyncIterator[TaskRecord]:
        """`YADTQ.follow`: the record now, then each time its status or progress changes, until it
        is final (`async for rec in q.follow(id)`); raises `ResultTimeout`, `TaskNotFound`."""
        backend = self.backend
        assert self._announcements is not None
        async for rec in async_follow(backend, self._announcements, task_id, timeout, self.settings.result_poll):
            yield rec

    async def result(self, task_id: str, timeout: float | None = None) -> Any:
        """The task's (or workflow's) result; raises `TaskFailed` with its error, `ResultTimeout`, `TaskNotFound`."""
        if is_workflow_id(task_id) and await self.workflows.store.exists(task_id):
            return await self.workflows.result(task_id, timeout, self.settings.result_poll)
        rec = await self._wait_task(task_id, timeout)
        if rec.status == Status.FAILED:
            raise TaskFailed(task_id, rec.error or "unknown error", rec.attempts)
        return rec.result

    async def cancel(self, task_id: str, by: str = "client") -> TaskRecord:
        """Moves a queued task to `cancelled`; raises `TaskNotFound`, `TaskNotCancellable`."""
        return await self.backend.cancel(task_id, by)

    # -- workflows (yadtq.client.async_workflows) --------------------------
    @property
    def workflows(self) -> AsyncWorkflows:
        if self._workflows is None:
            raise RuntimeError("AsyncYADTQ is not connected: use `async with` or `await q.connect()`")
        return self._workflows

    def signature(self, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                  **options: Any) -> Signature:
        """A signature of a task this client does not import: `q.signature("add", [1, 2])`."""
        return signature(task, args, kwargs, **options)

    async def submit_workflow(self, wf: Canvas | Mapping[str, Any], *, workflow_id: str | None = None,
                              unchecked: bool = False) -> str:
        """Records and starts a chain, group, chord or signature; returns the workflow id
        (`await result(id)` waits for its final result)."""
        return await self.workflows.submit(wf, workflow_id=workflow_id, unchecked=unchecked)

    async def workflow(self, workflow_id: str) -> WorkflowState:
        """The state of every node; raises `TaskNotFound` for an unknown id."""
        return await self.workflows.get(workflow_id)

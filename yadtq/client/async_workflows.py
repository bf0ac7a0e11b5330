"""Workflows for `AsyncYADTQ`: `yadtq.client.workflows` on the asyncio store and publisher.

The rules (and the pure pieces: names checked, linked tasks, a status read's outcome) are the
blocking client's; only the waiting differs: woken by the workflow's announcement on
redis.asyncio, re-reading every `poll` seconds besides.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from kafka.errors import KafkaError

from yadtq.client.building import resolve_queue
from yadtq.client.workflows import ENDED, as_canvas, check_names, linked, log_outbox, outcome
from yadtq.errors import BrokerUnavailable, ResultTimeout, TaskNotFound
from yadtq.store.async_announcements import AsyncAnnouncements
from yadtq.store.async_workflows import AsyncWorkflowStore
from yadtq.store.workflows import WorkflowState, new_workflow_id, plan
from yadtq.task.canvas import Canvas, Signature, group
from yadtq.task.messages import TaskMessage
from yadtq.task.trace_context import workflow_span

Send = Callable[[Sequence[TaskMessage]], Awaitable[None]]
Served = Callable[[], Awaitable[Mapping[str, Any]]]


class AsyncWorkflows:
    # `served`: what live workers serve (the client's cached edge check); `send`: publish and await the acks.
    # `announced_queue`: the queue live workers announce for a task (the client's edge check, read by `served`).
    def __init__(self, store: AsyncWorkflowStore, served: Served, send: Send, default_tries: int,
                 announcements: AsyncAnnouncements,
                 announced_queue: Callable[[str], str | None] = lambda task: None) -> None:
        self.store = store
        self.announced_queue = announced_queue
        self.served = served
        self.send = send
        self.default_tries = default_tries
        self.announcements = announcements

    async def submit(self, wf: Canvas | Mapping[str, Any], *, workflow_id: str | None = None,
                     unchecked: bool = False, errback: Signature | None = None) -> str:
        """`Workflows.submit`: records and starts `wf`; returns the workflow id."""
        canvas = as_canvas(wf)
        served = await self.served()  # also what `announced_queue` reads
        if not unchecked:
            check_names(canvas if errback is None else group(canvas, errback), served)
        wid = workflow_id or new_workflow_id()
        with workflow_span(wid):
            started = await self.store.start(plan(wid, canvas, self.default_tries, errback, self.queue_of))
            if started.messages:
                try:
                    await self.send(started.messages)
                except (BrokerUnavailable, KafkaError) as exc:
                    log_outbox(wid, started, exc)
                    return wid
                await self.store.confirm(started)
        return wid

    def queue_of(self, task: str, queue: str | None) -> str | None:
        """`Workflows.queue_of`: the signature's queue, else the task's declared one."""
        return resolve_queue(task, queue, self.announced_queue)

    async def submit_linked(self, m: TaskMessage, link: Any, link_error: Any) -> str:
        canvas, errback = linked(m, link, link_error)
        # its workflow on the task's shard where Redis is a cluster (the task keeps its own id)
        await self.submit(canvas, workflow_id=self.store.new_id(near=m.task_id), errback=errback, unchecked=True)
        return m.task_id

    async def get(self, workflow_id: str) -> WorkflowState:
        found = await self.store.get(workflow_id)
        if found is None:
            raise TaskNotFound(workflow_id)
        return found

    async def wait(self, workflow_id: str, timeout: float | None = None, poll: float = 0.5) -> WorkflowState:
        """`Workflows.wait`: the workflow's state once it has ended (success or failed)."""
        await self._until_done(workflow_id, timeout, poll)
        return await self.get(workflow_id)

    async def result(self, workflow_id: str, timeout: float | None = None, poll: float = 0.5) -> Any:
        """`Workflows.result`: the final result, or `TaskFailed` with the failing member's error."""
        return outcome(workflow_id, await self._until_done(workflow_id, timeout, poll))[1]

    async def _until_done(self, workflow_id: str, timeout: float | None,
                          poll: float) -> tuple[str, Any, str | None]:
        """`Workflows._until_done`: subscribed before the first read, so no announcement is missed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self.announcements.listen([workflow_id]) as changes:
            while True:
                got = await self.store.status(workflow_id)
                if got is None:
                    raise TaskNotFound(workflow_id)
                if got[0] in ENDED:
                    return got
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ResultTimeout(workflow_id, timeout or 0, got[0])
                await changes.wait(poll if left is None else min(poll, left))

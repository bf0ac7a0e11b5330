"""`WorkflowStore` on redis.asyncio (for `AsyncYADTQ`): the same scripts, calls and readers
(yadtq.store.workflow_calls), and on a Redis Cluster the same shard rules; only the I/O differs."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from yadtq.config import Settings
from yadtq.store.connection import decoded_hash
from yadtq.store.keyspace import KeySpace
from yadtq.store.scripts import bind_async
from yadtq.store.workflow_calls import (
    LIVE_FIELDS,
    MESSAGE_FIELDS,
    NOT_NEW,
    STATUS_FIELDS,
    Started,
    WorkflowState,
    message_of,
    start_call,
    start_reply,
    state_of,
    status_of,
    task_specs,
    untake_call,
    workflow_key,
)
from yadtq.store.workflows import HOLD, Plan, WorkflowStore, workflow_id_near


class AsyncWorkflowStore:
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.space = KeySpace.of(settings)
        self.keys = self.space.base
        self._start = bind_async(client, "workflow_start")
        self._untake = bind_async(client, "untake")

    def new_id(self, near: str) -> str:
        """`WorkflowStore.new_id`."""
        return workflow_id_near(self.space, near)

    async def start(self, p: Plan, hold: float = HOLD) -> Started:
        """`WorkflowStore.start`."""
        k = WorkflowStore.shard_of_plan(self.space, p)
        keys, args = start_call(k, p.workflow_id, p.fields, hold, self.settings.result_ttl)
        new, armed, ids = start_reply(await self._start(keys=keys, args=args))
        if not new:
            return NOT_NEW
        pipe = self.r.pipeline(transaction=False)
        for tid in ids:
            pipe.hmget(k.task(tid), *MESSAGE_FIELDS)
        rows = await pipe.execute()
        return Started([message_of(tid, row) for tid, row in zip(ids, rows, strict=True)], armed, True)

    async def confirm(self, started: Started) -> None:
        """`WorkflowStore.confirm`."""
        if started.messages:
            keys, args = untake_call(self.space.for_task(started.messages[0].task_id), started)
            await self._untake(keys=keys, args=args)

    async def exists(self, workflow_id: str) -> bool:
        return bool(await self.r.exists(workflow_key(self.space.for_task(workflow_id), workflow_id)))

    async def status(self, workflow_id: str) -> tuple[str, Any, str | None] | None:
        """`WorkflowStore.status`."""
        return status_of(await self.r.hmget(workflow_key(self.space.for_task(workflow_id), workflow_id),
                                            *STATUS_FIELDS))

    async def get(self, workflow_id: str) -> WorkflowState | None:
        """`WorkflowStore.get`."""
        k = self.space.for_task(workflow_id)
        h = decoded_hash(await self.r.hgetall(workflow_key(k, workflow_id)))
        if not h:
            return None
        specs = task_specs(h)
        pipe = self.r.pipeline(transaction=False)
        for spec in specs.values():
            pipe.hmget(k.task(spec["id"]), *LIVE_FIELDS)
        return state_of(workflow_id, h, specs, await pipe.execute())

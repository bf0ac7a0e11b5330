"""`WorkflowStore` on redis.asyncio (for `AsyncYADTQ`): the same scripts, calls and readers
(yadtq.store.workflow_calls); only the I/O differs."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from yadtq.config import Settings
from yadtq.store.connection import decoded_hash
from yadtq.store.keyspace import base_keys
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
from yadtq.store.workflows import HOLD, Plan


class AsyncWorkflowStore:
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.keys = base_keys(settings)
        self._start = bind_async(client, "workflow_start")
        self._untake = bind_async(client, "untake")

    async def start(self, p: Plan, hold: float = HOLD) -> Started:
        """`WorkflowStore.start`."""
        keys, args = start_call(self.keys, p.workflow_id, p.fields, hold, self.settings.result_ttl)
        new, armed, ids = start_reply(await self._start(keys=keys, args=args))
        if not new:
            return NOT_NEW
        pipe = self.r.pipeline(transaction=False)
        for tid in ids:
            pipe.hmget(self.keys.task(tid), *MESSAGE_FIELDS)
        rows = await pipe.execute()
        return Started([message_of(tid, row) for tid, row in zip(ids, rows, strict=True)], armed, True)

    async def confirm(self, started: Started) -> None:
        """`WorkflowStore.confirm`."""
        if started.messages:
            keys, args = untake_call(self.keys, started)
            await self._untake(keys=keys, args=args)

    async def exists(self, workflow_id: str) -> bool:
        return bool(await self.r.exists(workflow_key(self.keys, workflow_id)))

    async def status(self, workflow_id: str) -> tuple[str, Any, str | None] | None:
        """`WorkflowStore.status`."""
        return status_of(await self.r.hmget(workflow_key(self.keys, workflow_id), *STATUS_FIELDS))

    async def get(self, workflow_id: str) -> WorkflowState | None:
        """`WorkflowStore.get`."""
        h = decoded_hash(await self.r.hgetall(workflow_key(self.keys, workflow_id)))
        if not h:
            return None
        specs = task_specs(h)
        pipe = self.r.pipeline(transaction=False)
        for spec in specs.values():
            pipe.hmget(self.keys.task(spec["id"]), *LIVE_FIELDS)
        return state_of(workflow_id, h, specs, await pipe.execute())

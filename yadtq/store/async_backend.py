"""The asyncio side of the store: what `AsyncYADTQ` needs of Redis, on redis-py's asyncio client.

The same Lua scripts (yadtq/store/lua, by EVALSHA), the same keys (yadtq.store.keys) and the
same call builders and reply readers as the blocking backend (yadtq.store.script_calls,
yadtq.store.served): only the I/O differs. Announcements: yadtq.store.async_announcements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from yadtq.config import Settings
from yadtq.errors import BackendUnavailable, ConfigError, TaskNotFound
from yadtq.redaction import redact_url
from yadtq.store.backend import TaskRecord
from yadtq.store.cluster import is_cluster_url
from yadtq.store.connection import decoded_hash
from yadtq.store.keyspace import base_keys
from yadtq.store.script_calls import (
    CANCEL_TRIES,
    cancel_call,
    check_cancelled,
    submit_call,
    submit_verdict,
    undone,
    unsubmit_call,
)
from yadtq.store.scripts import bind_async
from yadtq.store.sentinel import is_sentinel_url, parse_sentinel_url
from yadtq.store.served import served_entries, served_key, split_live
from yadtq.task.messages import TaskMessage

AsyncRedisClient = aioredis.Redis


async def connect_async_redis(settings: Settings) -> aioredis.Redis:
    """An asyncio client for `settings.redis_url` (a plain or a `redis+sentinel://` URL), with the
    options of `yadtq.store.connection.connect_redis`; raises `BackendUnavailable` if it does not answer."""
    options: dict[str, Any] = dict(
        decode_responses=True, socket_connect_timeout=settings.connect_timeout, socket_keepalive=True,
        health_check_interval=30, retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    if is_cluster_url(settings.redis_url):  # not yet: its calls are not routed by shard (docs/redis-cluster.md)
        raise ConfigError("the asyncio client does not support a Redis Cluster yet; use YADTQ (the blocking client)")
    try:
        if is_sentinel_url(settings.redis_url):
            target = parse_sentinel_url(settings.redis_url)
            sentinel = Sentinel(list(target.sentinels), sentinel_kwargs={  # type: ignore[no-untyped-call]
                "socket_connect_timeout": settings.connect_timeout, "password": target.sentinel_password})
            client: aioredis.Redis = sentinel.master_for(
                target.master, db=target.db, username=target.username, password=target.password, **options)
        else:
            client = aioredis.Redis.from_url(settings.redis_url, **options)
    except (ValueError, TypeError):
        raise ConfigError("YADTQ_REDIS_URL is not a valid Redis URL "
                          "(redis[s]://[[user]:password@]host[:port][/db])") from None
    try:
        await client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        await client.aclose()
        raise BackendUnavailable(settings.redis_url, redact_url(str(exc).splitlines()[0])) from None
    return client


class AsyncBackend:
    """Task records for the asyncio client: submit, undo, read, cancel."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.keys = base_keys(settings)
        self._submit = bind_async(client, "submit")
        self._unsubmit = bind_async(client, "unsubmit")
        self._cancel = bind_async(client, "cancel")

    async def record_queued(self, messages: Sequence[TaskMessage], default_tries: int, token: str) -> list[str]:
        """`Backend.record_queued`: one verdict per message ("new" or the existing record's status)."""
        pipe = self.r.pipeline(transaction=False)
        for m in messages:
            keys, args = submit_call(self.keys, m, default_tries, token)
            await self._submit(keys=keys, args=args, client=pipe)
        return [submit_verdict(m, raw) for m, raw in zip(messages, await pipe.execute(), strict=True)]

    async def unsubmit(self, task_ids: Sequence[str], token: str) -> list[str]:
        """`Backend.unsubmit`: undoes this submit's `queued` records no worker claimed."""
        pipe = self.r.pipeline(transaction=False)
        for tid in task_ids:
            keys, args = unsubmit_call(self.keys, tid, token)
            await self._unsubmit(keys=keys, args=args, client=pipe)
        return undone(list(task_ids), await pipe.execute())

    async def get(self, task_id: str) -> TaskRecord:
        """Raises `TaskNotFound` for an unknown id."""
        h = await self.r.hgetall(self.keys.task(task_id))
        if not h:
            raise TaskNotFound(task_id)
        return TaskRecord.from_hash(task_id, decoded_hash(h))

    async def cancel(self, task_id: str, by: str = "api") -> TaskRecord:
        """`Backend.cancel`: raises `TaskNotFound`, `TaskNotCancellable`."""
        for attempt in range(1, CANCEL_TRIES + 1):
            worker = str(await self.r.hget(self.keys.task(task_id), "worker") or "")
            keys, args = cancel_call(self.keys, task_id, self.settings.result_ttl, by, worker)
            if check_cancelled(task_id, await self._cancel(keys=keys, args=args), last_try=attempt == CANCEL_TRIES):
                break
        return await self.get(task_id)

    async def live_served(self) -> dict[str, dict[str, Any]]:
        """`yadtq.store.served.live_served`: worker -> {task: spec} of live workers."""
        entries = served_entries(decoded_hash(await self.r.hgetall(served_key(self.keys))))
        if not entries:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for worker in entries:
            pipe.hget(self.keys.worker_name(worker), "incarnation")
        live, gone = split_live(entries, await pipe.execute())
        if gone:
            await self.r.hdel(served_key(self.keys), *gone)
        return live

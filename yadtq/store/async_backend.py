"""The asyncio side of the store: what `AsyncYADTQ` needs of Redis, on redis-py's asyncio client.

The same Lua scripts (yadtq/store/lua, by EVALSHA), the same keys (yadtq.store.keys) and the
same call builders and reply readers as the blocking backend (yadtq.store.script_calls,
yadtq.store.served): only the I/O differs. Announcements: yadtq.store.async_announcements.

On a Redis Cluster (redis.asyncio's RedisCluster) each task's keys are its shard's, as for the
blocking backend (yadtq.store.keyspace). redis-py's cluster pipeline refuses EVALSHA, so there a
batch of script calls runs as concurrent calls, each routed to the node of its keys' slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.commands.core import AsyncScript

from yadtq.config import Settings
from yadtq.errors import BackendUnavailable, ConfigError, MessageError, TaskNotFound
from yadtq.redaction import redact_url
from yadtq.store.backend import TaskRecord
from yadtq.store.cluster import is_cluster_url, parse_cluster_url
from yadtq.store.connection import decoded_hash
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.script_calls import (
    CANCEL_TRIES,
    cancel_call,
    check_cancelled,
    made_ids,
    submit_calls,
    submit_replies,
    submit_verdicts,
    undone,
    unsubmit_call,
)
from yadtq.store.scripts import bind_async
from yadtq.store.sentinel import is_sentinel_url, parse_sentinel_url
from yadtq.store.served import served_entries, served_key, split_live
from yadtq.task.messages import TaskMessage

AsyncRedisClient = aioredis.Redis
# Script calls of one batch in flight at once on a cluster (each takes a connection of its node's pool).
CLUSTER_CALLS_IN_FLIGHT = 32


async def connect_async_redis(settings: Settings) -> aioredis.Redis:
    """An asyncio client for `settings.redis_url` (a plain, a `redis+sentinel://` or a `redis+cluster://`
    URL), with the options of `yadtq.store.connection.connect_redis`; raises `BackendUnavailable` if it
    does not answer."""
    options: dict[str, Any] = dict(
        decode_responses=True, socket_connect_timeout=settings.connect_timeout, socket_keepalive=True,
        health_check_interval=30, retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    client: aioredis.Redis
    try:
        if is_cluster_url(settings.redis_url):
            client = _cluster_client(settings.redis_url, options)
        elif is_sentinel_url(settings.redis_url):
            target = parse_sentinel_url(settings.redis_url)
            sentinel = Sentinel(list(target.sentinels), sentinel_kwargs={  # type: ignore[no-untyped-call]
                "socket_connect_timeout": settings.connect_timeout, "password": target.sentinel_password})
            client = sentinel.master_for(
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


def _cluster_client(url: str, options: dict[str, Any]) -> aioredis.Redis:
    """redis.asyncio's RedisCluster for a `redis+cluster://` URL, typed as `aioredis.Redis` as the
    blocking client is (yadtq.store.cluster.cluster_client): every key scheme call stays on one slot."""
    target = parse_cluster_url(url)
    options = {k: v for k, v in options.items() if k != "retry_on_error"}  # it retries on its own
    return cast("aioredis.Redis", AsyncRedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
                                                    username=target.username, password=target.password, **options))


class AsyncBackend:
    """Task records for the asyncio client: submit, undo, read, cancel."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.space = KeySpace.of(settings)
        self.keys = self.space.base  # the cluster-wide state's; a task's are `space.for_task(id)`
        self._submit = bind_async(client, "submit")
        self._unsubmit = bind_async(client, "unsubmit")
        self._cancel = bind_async(client, "cancel")

    async def record_queued(self, messages: Sequence[TaskMessage], default_tries: int, token: str) -> list[str]:
        """`Backend.record_queued`: one verdict per message ("new" or the existing record's status)."""
        calls, named = submit_calls(self.space, messages, default_tries, token)
        replies = submit_replies(len(messages), calls, await self._batch(self._submit, [call for _, call in calls]))
        for key, names in named.items():
            await self.r.sadd(key, *names)
        verdicts = submit_verdicts(messages, replies)
        if isinstance(verdicts, MessageError):
            await self.unsubmit(made_ids(messages, replies), token)  # all or nothing: none of this call's records
            raise verdicts
        return verdicts

    async def unsubmit(self, task_ids: Sequence[str], token: str) -> list[str]:
        """`Backend.unsubmit`: undoes this submit's `queued` records no worker claimed."""
        calls = [unsubmit_call(self.space.for_task(tid), tid, token) for tid in task_ids]
        return undone(list(task_ids), await self._batch(self._unsubmit, calls))

    async def _batch(self, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """`script` once per (keys, args), replies in order: one pipeline on one server; on a cluster,
        concurrent calls (its pipeline refuses EVALSHA), at most CLUSTER_CALLS_IN_FLIGHT at once."""
        if not self.space.sharded:
            pipe = self.r.pipeline(transaction=False)
            for keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            return list(await pipe.execute())
        gate = asyncio.Semaphore(CLUSTER_CALLS_IN_FLIGHT)

        async def one(keys: list[str], args: list[Any]) -> Any:
            async with gate:
                return await script(keys=keys, args=args)
        return list(await asyncio.gather(*(one(keys, args) for keys, args in calls)))

    def _task_keys(self, task_id: str) -> Keys:
        return self.space.for_task(task_id)

    async def get(self, task_id: str) -> TaskRecord:
        """Raises `TaskNotFound` for an unknown id."""
        h = await self.r.hgetall(self._task_keys(task_id).task(task_id))
        if not h:
            raise TaskNotFound(task_id)
        return TaskRecord.from_hash(task_id, decoded_hash(h))

    async def cancel(self, task_id: str, by: str = "api") -> TaskRecord:
        """`Backend.cancel`: raises `TaskNotFound`, `TaskNotCancellable`."""
        k = self._task_keys(task_id)
        for attempt in range(1, CANCEL_TRIES + 1):
            worker = str(await self.r.hget(k.task(task_id), "worker") or "")
            keys, args = cancel_call(k, task_id, self.settings.result_ttl, by, worker)
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

"""Announced record changes for asyncio waiters: `yadtq.store.announcements` on redis.asyncio.

The same contract: subscribe (and have Redis confirm it) before the first read, re-read the
record after every `wait` whatever it returned, and `wait` never blocks longer than asked nor
raises for Redis being away (then it sleeps the timeout out, and subscribes again later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from types import TracebackType

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from yadtq.store.announcements import _BROKEN, SUBSCRIBE_TIMEOUT
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace

log = logging.getLogger(__name__)


class AsyncAnnouncements:
    def __init__(self, client: aioredis.Redis, keys: Keys, space: KeySpace | None = None) -> None:
        """`space`: where the task records live (on a Redis Cluster a record's channel is its shard's,
        as in `Announcements`); None: all under `keys`, one server."""
        self.client = client
        self.keys = keys
        self.space = space or KeySpace(keys.prefix)

    def listen(self, task_ids: Sequence[str]) -> AsyncSubscription:
        """Use as `async with announcements.listen(ids) as changes:` (subscribed on entry)."""
        return AsyncSubscription(self.client, [self.space.for_task(t).changes(t) for t in task_ids])


class AsyncSubscription:
    def __init__(self, client: aioredis.Redis, channels: Sequence[str]) -> None:
        self._client = client
        self._channels = list(channels)
        self._pubsub: PubSub | None = None

    @property
    def live(self) -> bool:
        return self._pubsub is not None

    async def wait(self, timeout: float) -> str | None:
        """An announcement's payload within `timeout` seconds, or None (see the module's contract)."""
        if self._pubsub is None:
            if await self._subscribe():
                return None
            await asyncio.sleep(max(0.0, timeout))
            return None
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while True:
                left = deadline - time.monotonic()
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.0, left))
                if msg is not None and msg.get("type") == "message":
                    return str(msg["data"])
                if left <= 0:
                    return None
        except _BROKEN as exc:
            log.debug("announcements unavailable (%s): polling until they are back", exc)
            await self._drop()
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            return None

    async def __aenter__(self) -> AsyncSubscription:
        await self._subscribe()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._drop()

    async def _subscribe(self) -> bool:
        """Subscribes and waits for Redis to confirm every channel (see `Subscription._subscribe`)."""
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*self._channels)
            confirmed, deadline = 0, time.monotonic() + SUBSCRIBE_TIMEOUT
            while confirmed < len(self._channels):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no confirmation of SUBSCRIBE")
                msg = await pubsub.get_message(timeout=left)
                confirmed += msg is not None and msg.get("type") == "subscribe"
        except _BROKEN as exc:
            log.debug("cannot subscribe to announcements (%s): polling", exc)
            await _close_quietly(pubsub)
            return False
        self._pubsub = pubsub
        return True

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _close_quietly(pubsub)


async def _close_quietly(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    except _BROKEN as exc:
        log.debug("closing a broken subscription: %s", exc)

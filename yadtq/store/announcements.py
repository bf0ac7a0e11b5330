"""Announced changes of task records: what lets a waiter wake when an outcome is stored.

Every Lua step that changes a task's record also PUBLISHes on the record's channel
(`Keys.changes`: the task key + ":changes"; payload: the new status, or "progress"),
atomically with the change. A waiter subscribes first and reads the record second,
so a change made between its read and its wait is never missed (no lost wake-up):

    with Announcements(client, keys).listen([task_id]) as changes:
        rec = backend.get(task_id)
        while not rec.done:
            changes.wait(poll)          # a change announced, or `poll` seconds passed
            rec = backend.get(task_id)

A final outcome stored by a worker's step is announced with the record itself while
someone listens ("success {json}": `pushed_record`), so a waiter returns without a
second round trip to Redis; any other announcement is only a cue to read the record.

Pub/sub delivers at most once and only while connected: an announcement made while
the subscription was down (a Redis restart) is lost. So a waiter re-reads the record
after every `wait`, whatever it returned, and `wait` never blocks longer than asked:
while pub/sub is unavailable it sleeps the timeout out (the waiter polls slowly), and
it subscribes again on a later call. The subscription holds one connection of its own.

An asyncio version mirrors this API: `listen(ids)` as an async context manager, `await wait(t)`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from types import TracebackType

from redis.client import PubSub

from yadtq.store.backend import TaskRecord
from yadtq.store.connection import REDIS_UNAVAILABLE, RedisClient
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace

log = logging.getLogger(__name__)

# An announcement: a status (yadtq.task.status.Status) or this, when only the progress changed.
PROGRESS = "progress"
_BROKEN: tuple[type[Exception], ...] = (*REDIS_UNAVAILABLE, OSError)
SUBSCRIBE_TIMEOUT = 5.0


def pushed_record(task_id: str, payload: str | None) -> TaskRecord | None:
    """The final record an announcement carries (step.lua: the status, a space, the record's
    HGETALL as a JSON list), or None for any other payload (then the caller reads the record)."""
    _, sep, body = (payload or "").partition(" ")
    if not sep:
        return None
    try:
        flat = json.loads(body)
        rec = TaskRecord.from_hash(task_id, dict(zip(flat[::2], flat[1::2], strict=True)))
    except (ValueError, TypeError, AttributeError):  # not a record: read it instead
        return None
    return rec if rec.done else None


class Announcements:
    """Subscriptions to the change channels of task records."""

    def __init__(self, client: RedisClient, keys: Keys, space: KeySpace | None = None) -> None:
        """`space`: where the task records live (on a Redis Cluster a record's channel is its shard
        key's); None: all under `keys`, one server."""
        self.client = client
        self.keys = keys
        self.space = space or KeySpace(keys.prefix)

    def listen(self, task_ids: Sequence[str]) -> Subscription:
        """Subscribes now to the changes of `task_ids` (never raises: while Redis is away the
        subscription starts broken and `wait` polls); use it as a context manager."""
        return Subscription(self.client, [self.space.for_task(t).changes(t) for t in task_ids])


class Subscription:
    """Changes announced for some tasks from the moment it was made (or last re-subscribed)."""

    def __init__(self, client: RedisClient, channels: Sequence[str]) -> None:
        self._client = client
        self._channels = list(channels)
        self._pubsub: PubSub | None = None
        self._subscribe()

    @property
    def live(self) -> bool:
        """True while subscribed; False after pub/sub failed (each `wait` then tries again)."""
        return self._pubsub is not None

    def wait(self, timeout: float) -> str | None:
        """Waits up to `timeout` seconds for an announcement; returns its payload (a status or
        `PROGRESS`), or None when none came. Never raises for Redis being away: then it sleeps
        `timeout` out, or returns at once after subscribing again (changes may have been missed
        meanwhile: the caller re-reads the record either way)."""
        if self._pubsub is None:
            if self._subscribe():
                return None
            time.sleep(max(0.0, timeout))
            return None
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while True:
                left = deadline - time.monotonic()
                msg = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.0, left))
                if msg is not None and msg.get("type") == "message":
                    return str(msg["data"])
                if left <= 0:
                    return None
        except _BROKEN as exc:
            log.debug("announcements unavailable (%s): polling until they are back", exc)
            self._drop()
            time.sleep(max(0.0, deadline - time.monotonic()))
            return None

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _subscribe(self) -> bool:
        """Subscribes and waits for Redis to confirm every channel: SUBSCRIBE travels on its own
        connection, so without the confirmation the caller's next read (on another connection)
        could be served first, and a change between the two would go unheard."""
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(*self._channels)
            confirmed, deadline = 0, time.monotonic() + SUBSCRIBE_TIMEOUT
            while confirmed < len(self._channels):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no confirmation of SUBSCRIBE")
                msg = pubsub.get_message(timeout=left)
                confirmed += msg is not None and msg.get("type") == "subscribe"
        except _BROKEN as exc:
            log.debug("cannot subscribe to announcements (%s): polling", exc)
            _close_quietly(pubsub)
            return False
        self._pubsub = pubsub
        return True

    def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            _close_quietly(pubsub)


def _close_quietly(pubsub: PubSub) -> None:
    try:
        pubsub.close()
    except _BROKEN as exc:  # closing a connection Redis already dropped
        log.debug("closing a broken subscription: %s", exc)

"""The Redis connection the mixes' tasks write their notes with (one per worker process)."""

from __future__ import annotations

import os
import time

import redis

from yadtq import current_task
from yadtq.config import Settings
from yadtq.store.cluster import is_cluster_url
from yadtq.store.connection import REDIS_UNAVAILABLE, connect_redis

_client: redis.Redis | None = None


def ledger() -> redis.Redis:
    """The run's Redis (`YADTQ_REDIS_URL`, a Redis Cluster's too), connected on first use."""
    global _client
    if _client is None:
        url = os.environ["YADTQ_REDIS_URL"]
        _client = connect_redis(Settings(redis_url=url)) if is_cluster_url(url) \
            else redis.Redis.from_url(url, decode_responses=True)
    return _client


def this_run() -> str:
    """`<worker> <pid> <time>`: what tells this run of a task from another run of the same attempt, so
    that a note carrying it (`note`) is written once per run and a genuine second run still counts."""
    ctx = current_task()
    return f"{ctx.worker if ctx is not None else '-'} {os.getpid()} {time.time():.6f}"


def note(key: str, line: str, patience: float = 60.0) -> None:
    """Appends `line` (unique to its run) to the list `key`, once, without failing the run.

    A kill -9 of Redis can cut off the reply of a write it had already made durable (killed
    during its fsync): the note is in the list, but the task would raise, be retried and note
    again, a second run with none cut off. So a note that meets a lost connection is sent again,
    guarded (written only if absent), until Redis is back (within `patience` seconds)."""
    try:
        ledger().rpush(key, line)
        return
    except REDIS_UNAVAILABLE:  # on a cluster also CLUSTERDOWN, while a primary restarts
        pass
    deadline = time.monotonic() + patience
    while True:
        try:
            # Only this run writes `line` (it is unique to the run), so looking first is enough.
            if ledger().lpos(key, line) is None:
                ledger().rpush(key, line)
            return
        except REDIS_UNAVAILABLE:  # refused, cut off, still loading its append-only file, or CLUSTERDOWN
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

"""The Redis connection the mixes' tasks write their notes with (one per worker process)."""

from __future__ import annotations

import os

import redis

_client: redis.Redis | None = None


def ledger() -> redis.Redis:
    """The run's Redis (`YADTQ_REDIS_URL`), connected on first use."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["YADTQ_REDIS_URL"], decode_responses=True)
    return _client

"""Readers over every shard of a Redis Cluster (docs/redis-cluster.md): counts summed,
time-ordered lists merged by score. Each shard is asked for at most what one server
would be asked for, so a read stays bounded by `limit * shards` entries."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from yadtq.store.batch import Batch
from yadtq.store.connection import RedisClient
from yadtq.store.keyspace import KeySpace


def summed_cards(r: RedisClient, space: KeySpace, index_names: list[str]) -> list[int]:
    """ZCARD of each index named by `Keys.status`-style `index_names`, summed over the shards."""
    batch = Batch(r)
    for keys in space.shards:
        for name in index_names:
            key = keys.status(name)
            batch.on(key).zcard(key)
    replies = batch.execute()
    n = len(index_names)
    return [sum(int(replies[s * n + i]) for s in range(len(space.shards))) for i in range(n)]


def merged_range(r: RedisClient, space: KeySpace, status: str, offset: int, limit: int,
                 newest_first: bool) -> list[str]:
    """Ids `offset` to `offset + limit` of `status`, by when they entered it, across the shards."""
    return merged_top(r, [k.status(status) for k in space.shards], offset, limit, newest_first)


def merged_top(r: RedisClient, keys: list[str], offset: int, limit: int, newest_first: bool) -> list[str]:
    """Members `offset` to `offset + limit` of the sorted sets `keys` taken as one, by score."""
    want = offset + max(limit, 1)
    batch = Batch(r)
    for key in keys:
        pipe = batch.on(key)
        if newest_first:
            pipe.zrevrange(key, 0, want - 1, withscores=True)
        else:
            pipe.zrange(key, 0, want - 1, withscores=True)
    rows: list[list[Any]] = batch.execute()
    # each set's rows are in order already: a k-way merge by (score, member)
    sign = -1.0 if newest_first else 1.0
    merged = heapq.merge(*([(sign * float(score), str(member)) for member, score in row] for row in rows))
    return [member for _, member in list(merged)[offset:want]]


def merged_by_score(r: RedisClient, keys: list[str], low: str, high: str, limit: int) -> list[tuple[str, float]]:
    """The `limit` lowest-scored (member, score) with `low <= score <= high` of the sorted sets `keys`
    taken as one, ascending: each set asked for at most `limit`."""
    batch = Batch(r)
    for key in keys:
        batch.on(key).zrangebyscore(key, low, high, start=0, num=limit, withscores=True)
    rows: list[list[Any]] = batch.execute()
    merged = heapq.merge(*([(float(score), str(member)) for member, score in row] for row in rows))
    return [(member, score) for score, member in list(merged)[:limit]]


def earliest(r: RedisClient, keys: list[str]) -> float | None:
    """The lowest score in the sorted sets `keys` (one round trip per server); None when all are empty."""
    if len(keys) == 1:
        got = r.zrange(keys[0], 0, 0, withscores=True)
        return float(got[0][1]) if got else None
    batch = Batch(r)
    for key in keys:
        batch.on(key).zrange(key, 0, 0, withscores=True)
    firsts = [float(got[0][1]) for got in batch.execute() if got]
    return min(firsts) if firsts else None


def merged_ascending(r: RedisClient, keys: list[str], page: int) -> Iterator[str]:
    """Every member of the sorted sets `keys` taken as one, by score, oldest first: each set read `page`
    at a time, the first pages in one batch, so a whole walk reads each entry once (offset paging of the
    merged order would read every shard's head again for each page)."""
    first = Batch(r)
    for key in keys:
        first.on(key).zrange(key, 0, page - 1, withscores=True)
    return (member for _, member in heapq.merge(*(_ascending(r, key, page, got)
                                                  for key, got in zip(keys, first.execute(), strict=True))))


def _ascending(r: RedisClient, key: str, page: int, got: list[Any]) -> Iterator[tuple[float, str]]:
    offset = 0
    while True:
        yield from ((float(score), str(member)) for member, score in got)
        if len(got) < page:
            return
        offset += page
        got = r.zrange(key, offset, offset + page - 1, withscores=True)

"""Several commands (scripts included) in one round trip per server: a pipeline on one Redis,
one pipeline per node on a Redis Cluster.

redis-py's cluster pipeline refuses EVALSHA, so on a cluster each call goes to the
pipeline of the node that holds its first key (every call's keys share one slot:
docs/redis-cluster.md); the replies come back in the order the calls were queued.
The nodes' pipelines are sent at once, one thread each, so a batch costs about one
round trip whatever the number of primaries, not one per primary.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from redis.client import Pipeline
from redis.cluster import RedisCluster

from yadtq.store.connection import RedisClient

PARALLEL = True  # send the nodes' pipelines side by side (False: one after another)
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    # A forked child has none of its parent's threads: a pool inherited would take work and never run it.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _senders() -> ThreadPoolExecutor:
    """The threads that send the nodes' pipelines of a batch (made on first use: one server never needs them)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="yadtq-batch")
    return _pool


class Batch:
    """`batch.on(key)` is the pipeline the next call (about `key`) goes to: queue exactly one command
    on it per `on`; `execute()` sends them all and returns the replies in that order."""

    def __init__(self, client: RedisClient) -> None:
        self.r = client
        self._cluster: RedisCluster | None = client if isinstance(client, RedisCluster) else None
        self._pipes: dict[str, Pipeline] = {}
        self._order: list[tuple[str, int]] = []

    def on(self, key: str) -> Pipeline:
        name = ""
        if self._cluster is not None:
            node = self._cluster.get_node_from_key(key)  # type: ignore[no-untyped-call]
            name = node.name
            if name not in self._pipes:
                self._pipes[name] = self._cluster.get_redis_connection(node).pipeline(transaction=False)
        elif name not in self._pipes:
            self._pipes[name] = self.r.pipeline(transaction=False)
        pipe = self._pipes[name]
        self._order.append((name, len(pipe)))
        return pipe

    def execute(self) -> list[Any]:
        if PARALLEL and len(self._pipes) > 1:
            # Each node's pipeline on its own connection (its node client's pool): safe side by side.
            futures = {name: _senders().submit(pipe.execute) for name, pipe in self._pipes.items()}
            replies = {name: f.result() for name, f in futures.items()}
        else:
            replies = {name: pipe.execute() for name, pipe in self._pipes.items()}
        self._pipes.clear()
        order, self._order = self._order, []
        return [replies[name][i] for name, i in order]

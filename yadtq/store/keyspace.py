"""Where a key lives: one server, or the shards of a Redis Cluster (docs/redis-cluster.md).

On one server (or behind Sentinel) every `Keys` below is `Keys(settings.prefix)`, the
keys YADTQ always used. On a `redis+cluster://` URL:

- `for_task(id)`: the keys of the shard that holds task `id` (its record, events, and
  that shard's copies of the indexes a step on it updates), all under one hash tag;
- `shards`: every shard's keys, for readers that merge (counts, lists, sweeps);
- `base`: the cluster-wide state (workers, schedules, series), on one fixed slot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from yadtq.config import Settings
from yadtq.store.cluster import global_prefix, is_cluster_url, parse_cluster_url, shard_of, shard_prefix
from yadtq.store.keys import Keys

T = TypeVar("T")


@dataclass(frozen=True)
class KeySpace:
    prefix: str
    shard_count: int = 0  # 0: one server, no hash tags

    @classmethod
    def of(cls, settings: Settings) -> KeySpace:
        if is_cluster_url(settings.redis_url):
            return cls(settings.prefix, parse_cluster_url(settings.redis_url).shards)
        return cls(settings.prefix)

    @property
    def sharded(self) -> bool:
        return self.shard_count > 0

    @property
    def base(self) -> Keys:
        return Keys(global_prefix(self.prefix)) if self.sharded else Keys(self.prefix)

    def for_task(self, task_id: str) -> Keys:
        if not self.sharded:
            return Keys(self.prefix)
        return Keys(shard_prefix(self.prefix, shard_of(task_id, self.shard_count)))

    @property
    def shards(self) -> list[Keys]:
        if not self.sharded:
            return [Keys(self.prefix)]
        return [Keys(shard_prefix(self.prefix, n)) for n in range(self.shard_count)]

    def group(self, items: Iterable[T], task_id: Callable[[T], str]) -> dict[Keys, list[tuple[int, T]]]:
        """`items` by the shard of their task id, each with its position in `items` (to put replies back in order)."""
        out: dict[Keys, list[tuple[int, T]]] = {}
        for i, item in enumerate(items):
            out.setdefault(self.for_task(task_id(item)), []).append((i, item))
        return out


def base_keys(settings: Settings) -> Keys:
    """The keys of `settings`' cluster-wide state: `Keys(settings.prefix)` on one server."""
    return KeySpace.of(settings).base

"""`AsyncYADTQ` on a real local Redis Cluster (3 primaries, 16 shards): redis.asyncio's RedisCluster,
each task's calls on its shard, a batch of submits as concurrent calls (the cluster pipeline refuses
EVALSHA), and waiters woken on their shard's channel. test_async_client_engine's client tests run
here again, unchanged (imported below)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_async_client_engine import (  # noqa: F401 (spans: the module's span exporter, autouse)
    Farm,
    spans,
    test_async_client_runs_a_chain_a_group_and_a_chord_under_a_workflow_span,
    test_async_client_submits_tracks_and_wakes_on_the_announcement,
)

from yadtq.config import Settings
from yadtq.store.cluster import parse_cluster_url, shard_of

REUSED = (test_async_client_submits_tracks_and_wakes_on_the_announcement,
          test_async_client_runs_a_chain_a_group_and_a_chord_under_a_workflow_span)


@pytest.fixture
def farm(redis_cluster_url: str, tmp_path: Path) -> Iterator[Farm]:
    """test_async_client_engine's farm (a worker on an in-memory source), on the cluster."""
    f = Farm(Settings(redis_url=redis_cluster_url, prefix=f"u{uuid.uuid4().hex[:8]}:", partitions=1,
                      log_dir=str(tmp_path), concurrency=2, lease=2.0, tries=2, retry_backoff=0.05))
    yield f
    f.stop()


def test_a_batch_submitted_over_every_shard_runs_and_reads_back(farm: Farm) -> None:
    async def scenario() -> None:
        async with farm.client() as q:
            ids = await q.submit_many([("add", [i, 1]) for i in range(100)])
            assert len({shard_of(t, parse_cluster_url(farm.settings.redis_url).shards) for t in ids}) > 8
            assert await asyncio.gather(*(q.result(t, timeout=20) for t in ids)) == [i + 1 for i in range(100)]
            again = await q.submit_many([{"task": "add", "args": [0, 1], "task-id": ids[0]}])
            assert again == [ids[0]] and (await q.status(ids[0])).result == 1  # idempotent by id
    asyncio.run(scenario())

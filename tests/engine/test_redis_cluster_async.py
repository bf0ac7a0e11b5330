"""`AsyncYADTQ` on a real local Redis Cluster (3 primaries, 16 shards): redis.asyncio's RedisCluster,
each task's calls on its shard, a batch of submits as concurrent calls (the cluster pipeline refuses
EVALSHA), and waiters woken on their shard's channel. test_async_client_engine's client test runs
here again, unchanged (imported below)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_async_client_engine import Farm, test_async_client_submits_tracks_and_wakes_on_the_announcement

from yadtq import AsyncYADTQ
from yadtq.config import Settings
from yadtq.errors import TaskFailed
from yadtq.store.cluster import parse_cluster_url, shard_of
from yadtq.task.canvas import chain, chord, group

# Reused unchanged. Its workflow test is not (its span checks share test_async_client_engine's exporter,
# which that module shuts down when it ends): its workflow steps run below instead.
REUSED = (test_async_client_submits_tracks_and_wakes_on_the_announcement,)


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


def test_workflows_and_a_linked_task_run_on_their_shards(farm: Farm) -> None:
    """test_async_client_engine's workflow steps (without its spans): a chain, a group, a chord, a failing
    member and a linked callback, each workflow's members on its shard."""
    async def scenario(q: AsyncYADTQ) -> None:
        def add(*args: int) -> object:
            return q.signature("add", args)
        wids = [await q.submit_workflow(chain(add(1, 2), add(10), add(100))),
                await q.submit_workflow(group(add(1, 1), add(2, 2))),
                await q.submit_workflow(chord(group(add(1, 1), add(2, 2)), q.signature("total")).to_dict())]
        assert await asyncio.gather(*(q.result(w, timeout=8) for w in wids)) == [113, [2, 4], 6.0]
        state = await q.workflow(wids[2])
        assert state.status == "success" and [n.state for n in state.nodes] == ["success"] * 5
        failing = await q.submit_workflow(chain(add(1, 1), q.signature("add", [1], {"y": 2})))
        with pytest.raises(TaskFailed, match="add"):
            await q.result(failing, timeout=8)
        linked = await q.submit("add", [1, 2], link=add(10))
        assert await q.result(linked, timeout=8) == 3

    async def run() -> None:
        async with farm.client(result_poll=10.0) as q:  # only the announcements wake result() in time
            await scenario(q)
    asyncio.run(run())

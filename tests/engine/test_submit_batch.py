"""submit.lua records a chunk of messages per call (per shard on a Redis Cluster): each message's verdict
is the one it would get alone, in order within the batch, and an id taken by another body undoes every
record the call made (a real Redis, and a real Redis Cluster)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from yadtq.config import DEFAULT_QUEUE, Settings
from yadtq.errors import MessageError
from yadtq.store.async_backend import AsyncBackend, connect_async_redis
from yadtq.store.backend import Backend
from yadtq.store.connection import connect_redis
from yadtq.store.queue_stats import QueueStats
from yadtq.store.script_calls import SUBMIT_CHUNK
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status
from yadtq.task.timing import Timing


@pytest.fixture(params=["single", "cluster"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    url = request.getfixturevalue("redis_url" if request.param == "single" else "redis_cluster_url")
    settings = Settings(redis_url=url, prefix=f"b{uuid.uuid4().hex[:8]}:")
    client = connect_redis(settings)
    yield Backend(client, settings)
    client.close()


def _m(tid: str, *args: int, **options: object) -> TaskMessage:
    return TaskMessage(tid, "add", args, {}, 3, None, None, **options)  # type: ignore[arg-type]


def _status(backend: Backend, tid: str) -> str | None:
    got = backend.get_many([tid])
    return got[0].status if got else None


def test_each_message_of_a_batch_gets_the_verdict_it_would_get_alone(backend: Backend) -> None:
    assert backend.record_queued([_m("old", 1)], 3, "t0") == ["new"]
    batch = [_m("a", 1), _m("old", 1), _m("later", 2, timing=Timing(countdown=600)), _m("a", 1),
             _m("later", 2, timing=Timing(countdown=600)), _m("b", 2, queue="email")]
    assert backend.record_queued(batch, 3, "t1") == ["new", Status.QUEUED, "scheduled", Status.QUEUED,
                                                     Status.SCHEDULED, "new"]
    assert [r.status for r in backend.get_many(["a", "later", "b"])] == [Status.QUEUED, Status.SCHEDULED,
                                                                         Status.QUEUED]
    assert backend.counts()[Status.QUEUED] == 3 and backend.counts()[Status.SCHEDULED] == 1
    assert backend.get_many(["b"])[0].queue == "email"


def test_verdicts_come_back_in_order_across_chunks_and_shards(backend: Backend) -> None:
    n = 2 * SUBMIT_CHUNK + 37
    backend.record_queued([_m(f"x{i}", i) for i in range(0, n, 3)], 3, "t0")  # every third exists already
    batch = [_m(f"x{i}", i) for i in range(n)] + [_m("x1", 1), _m(f"x{n - 1}", n - 1)]
    want = [Status.QUEUED if i % 3 == 0 else "new" for i in range(n)] + [Status.QUEUED, Status.QUEUED]
    assert backend.record_queued(batch, 3, "t1") == want
    recs = backend.get_many([f"x{i}" for i in range(n)])
    assert [r.args for r in recs] == [[i] for i in range(n)]  # each record holds its own message's body
    assert backend.counts()[Status.QUEUED] == n


@pytest.mark.parametrize("taken", ["before", "within"])
def test_an_id_taken_by_another_body_undoes_every_record_of_the_batch(backend: Backend, taken: str) -> None:
    backend.record_queued([_m("kept", 9), _m("owned", 1)], 3, "t0")
    clash = _m("owned", 2) if taken == "before" else _m("n1", 5)
    batch = [_m("n1", 1), _m("kept", 9), *(_m(f"y{i}", i) for i in range(SUBMIT_CHUNK + 5)), clash, _m("n2", 1)]
    with pytest.raises(MessageError, match="taken by a task with another body") as err:
        backend.record_queued(batch, 3, "t1")
    assert err.value.task_id == clash.task_id
    assert [_status(backend, t) for t in ("n1", "n2", "y0", f"y{SUBMIT_CHUNK + 4}")] == [None] * 4
    assert backend.get_many(["kept", "owned"])[0].args == [9]  # an earlier submit's records stay
    assert backend.get_many(["owned"])[0].args == [1]
    assert backend.counts()[Status.QUEUED] == 2
    assert backend.record_queued([_m("n1", 1)], 3, "t2") == ["new"]  # the id is free again


def test_both_backends_list_the_named_queues_they_record(backend: Backend) -> None:
    """`yadtq queues` lists a named queue whichever client, blocking or asyncio, submitted to it first."""
    stats = QueueStats(backend.r, backend.keys, backend.space)
    backend.record_queued([_m("b1", 1, queue="blocking"), _m("b2", 1)], 3, "t0")

    async def submit_async() -> None:
        client = await connect_async_redis(backend.settings)
        try:
            await AsyncBackend(client, backend.settings).record_queued(
                [_m("a1", 1, queue="from-async"), _m("a2", 2, queue="from-async"), _m("a3", 3)], 3, "t1")
        finally:
            await client.aclose()
    asyncio.run(submit_async())
    assert stats.known() == [DEFAULT_QUEUE, "blocking", "from-async"]

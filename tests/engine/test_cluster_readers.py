"""The readers (search, type statistics, queue figures, export) on one Redis and on a 3-primary Redis
Cluster: the same answers, every task across the shards read once, and a bounded number of round
trips (one per server per step, not one per shard: 16 shards, 3 primaries). No broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.connection

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.store import search
from yadtq.store.export import iter_records
from yadtq.store.search import TaskQuery
from yadtq.store.workflows import new_workflow_id, plan
from yadtq.task.canvas import Signature, chain
from yadtq.task.messages import TaskMessage


@pytest.fixture(params=["redis_url", "redis_cluster_url"], ids=["redis", "cluster"])
def q(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[YADTQ]:
    settings = Settings(redis_url=request.getfixturevalue(request.param), prefix=f"r{uuid.uuid4().hex[:8]}:",
                        log_dir=str(tmp_path))
    with YADTQ(settings, create_topic=False) as client:  # reads only: no broker needed
        yield client


def round_trips(monkeypatch: pytest.MonkeyPatch, read: Callable[[], Any]) -> int:
    """How many requests `read` sends to Redis (a pipeline is one per server it goes to)."""
    sent = [0]
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return send(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
        read()
    return sent[0]


def test_readers_read_every_shard_once_within_their_round_trips(q: YADTQ, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [TaskMessage(f"t{n:03d}", "add", (n, 1), queue="email" if n % 3 else None) for n in range(90)]
    q.backend.record_queued(messages, 3)
    for m in messages[::6]:
        q.backend.cancel(m.task_id, by="test")
    ids = [m.task_id for m in messages]
    servers = 3 if q.backend.space.sharded else 1

    # A search pages through every task once, newest first, across the shards.
    seen: list[str] = []
    cursor = None
    while True:
        page = search.search(q.backend, TaskQuery(), limit=20, cursor=cursor)
        seen += [r.task_id for r in page.tasks]
        if not (cursor := page.next_cursor):
            break
    assert sorted(seen) == ids and len(seen) == len(set(seen))
    cancelled = search.search(q.backend, TaskQuery(statuses=("cancelled",)), limit=50).tasks
    assert {r.task_id for r in cancelled} == set(ids[::6])
    tight = search.search(q.backend, TaskQuery(task="nope"), budget=40)
    assert (tight.tasks, tight.scanned) == ([], 40) and tight.next_cursor
    # Export reads each status index once, oldest first, merged over the shards.
    exported = [r.task_id for r in iter_records(q.backend, "queued")]
    assert sorted(exported) == [t for t in ids if t not in ids[::6]]
    when = [(q.redis.zscore(q.backend.space.for_task(t).status("queued"), t), t) for t in exported]
    assert when == sorted(when)
    assert len(list(iter_records(q.backend, "queued", limit=7))) == 7
    rows = {d.queue: d for d in q.queues()}
    assert (rows["email"].queued, rows["default"].queued) == (60, 15) and rows["email"].lag is not None
    flows = [new_workflow_id() for _ in range(12)]
    for wid in flows:  # recorded, never published: no broker here
        q.workflows.store.start(plan(wid, chain(Signature("add", (1, 2)), Signature("add", (3,))), 3))
    assert {wid for wid, _ in q.workflows.store.recent_statuses(50)} == set(flows)

    # Before these readers batched their shards, a search cost 118 round trips on the cluster, the
    # type statistics 70 and the queue figures 148 (one or more per shard and queue); the newest
    # workflows with their status cost a round trip per workflow (12 here, on either).
    assert round_trips(monkeypatch, lambda: search.search(q.backend, TaskQuery(), limit=50)) <= 3 * servers
    assert round_trips(monkeypatch, lambda: search.type_stats(q.backend, 900)) <= 3 * servers
    assert round_trips(monkeypatch, q.queues) <= 1 + 6 * servers
    assert round_trips(monkeypatch, lambda: q.workflows.store.recent_statuses(50)) <= 2 * servers

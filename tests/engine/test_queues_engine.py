"""Named queues in-process: a real `Worker` on an in-memory source holding two queues' partitions, a
real Redis: the higher queue's backlog runs first, retries and dead letters stay with their queue,
and the depth per queue is counted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from worker_harness import CountingSource, Harness, Ledger  # noqa: F401 (a fixture)

from yadtq.config import Settings
from yadtq.store.live_state import LiveState
from yadtq.store.queue_stats import QueueStats
from yadtq.task.messages import TaskMessage
from yadtq.task.queues import STRIDE

HIGH, LOW = [0, 1], [STRIDE, STRIDE + 1]  # the engine's numbers of the two queues' partitions


@pytest.fixture
def h(redis_url: str, tmp_path: Path) -> Iterator[Harness]:  # noqa: F811
    u = uuid.uuid4().hex[:8]
    settings = Settings(redis_url=redis_url, prefix=f"q{u}:", topic="tasks", partitions=2, log_dir=str(tmp_path),
                        concurrency=1, lease=2.0, retry_backoff=0.2, queues="high,low", tries=2)
    harness = Harness(settings, CountingSource(STRIDE + 2), Ledger())
    yield harness
    harness.stop()


def submit(h: Harness, queue: str, task: str, *args: Any, **kwargs: Any) -> str:
    m = TaskMessage(uuid.uuid4().hex, task, args, kwargs, None, time.time(), queue=queue)
    h.backend.record_queued([m], h.settings.tries)
    parts = HIGH if queue == "high" else LOW
    h.source.append(m.encode(), m.task_id.encode(), parts[len(h.source.log[parts[0]]) % 2])
    return m.task_id


def test_the_high_queue_goes_first_and_depth_retries_and_dead_letters_stay_per_queue(h: Harness) -> None:
    stats = QueueStats(h.backend.r, h.backend.keys)
    low = [submit(h, "low", "sleep", 0.01, tag=f"low{i}") for i in range(6)]  # the low backlog came first
    high = [submit(h, "high", "sleep", 0.01, tag=f"high{i}") for i in range(6)]
    retried = submit(h, "low", "flaky", "flaky-low")
    dead = submit(h, "low", "boom", "fail")
    assert {r.queue: r.queued for r in stats.all()} == {"default": 0, "high": 6, "low": 8}
    assert h.backend.get(low[0]).queue == "low" and h.backend.get(low[0]).as_dict()["queue"] == "low"
    h.source.assign(HIGH + LOW)
    h.worker()
    h.wait_done(low + high + [dead])
    order = [name for name, _, _ in sorted(h.ledger.runs, key=lambda run: run[1])]
    assert sorted(order[:6]) == [f"high{i}" for i in range(6)], order  # one slot: all of high before any of low
    # The parked retry went back to the low queue's topic, not the default one.
    wait_for(lambda: any(retried.encode() == key for key, _, _ in h.source.published.get("tasks.low", [])), 10,
             what="the parked retry published to tasks.low")
    assert "tasks" not in h.source.published
    live = LiveState(h.backend.r, h.settings)
    assert [(e["task_id"], e["queue"], e["topic"]) for e in live.dead_letters(10, "low")] == [(dead, "low", "tasks.low")]
    assert live.dead_letters(10) == []  # the default queue's list
    rows = {r.queue: r for r in stats.all()}
    assert rows["high"].queued == 0 and rows["high"].throughput > 0 and rows["low"].dead_letters == 1


def test_a_record_stores_no_unset_option_and_notes_the_queue_it_ran_from(redis_url: str, tmp_path: Path) -> None:
    """Unset options (time limit, ordering key, the default queue) are no fields of a record, which is kept
    long after its task ends; set ones are, and every reader takes a missing one as unset. A claim notes the
    queue a task ran from: a record naming another queue than its message's topic is corrected, both ways."""
    settings = Settings(redis_url=redis_url, prefix=f"q{uuid.uuid4().hex[:8]}:", topic="tasks", partitions=1,
                        log_dir=str(tmp_path), concurrency=1, queues="high,default")
    h = Harness(settings, CountingSource(STRIDE + 1), Ledger())
    try:
        keyed = TaskMessage(uuid.uuid4().hex, "add", (3, 4), {}, 2, time.time(), 30.0, "user-7")
        moved = TaskMessage(uuid.uuid4().hex, "add", (5, 6), {}, None, time.time(), queue="high")
        stale = TaskMessage(uuid.uuid4().hex, "add", (1, 2), {}, None, time.time())
        h.backend.record_queued([keyed, moved, stale], settings.tries)
        fields = {m.task_id: h.backend.r.hgetall(h.backend.keys.task(m.task_id)) for m in (keyed, moved, stale)}
        assert all(v != "" for f in fields.values() for v in f.values()), fields
        assert not {"failures", "time_limit", "key", "queue"} & set(fields[stale.task_id])
        assert (fields[keyed.task_id]["time_limit"], fields[keyed.task_id]["key"]) == ("30.0", "user-7")
        assert "queue" not in fields[keyed.task_id] and fields[moved.task_id]["queue"] == "high"
        # Published elsewhere than their records say (as a path that did not know the queue would):
        # `moved` to the default queue's topic, `stale` (recorded for the default queue) to high's.
        h.source.append(keyed.encode(), b"user-7", STRIDE)
        h.source.append(TaskMessage(moved.task_id, "add", (5, 6)).encode(), moved.task_id.encode(), STRIDE)
        h.source.append(TaskMessage(stale.task_id, "add", (1, 2)).encode(), stale.task_id.encode(), 0)
        h.source.assign([0, STRIDE])
        h.worker()
        ids = [keyed.task_id, moved.task_id, stale.task_id]
        h.wait_done(ids)
        got = [h.backend.get(t) for t in ids]
        assert [(r.status, r.result, r.queue) for r in got] == \
            [("success", 7, "default"), ("success", 11, "default"), ("success", 3, "high")]
        assert (got[0].time_limit, got[0].key, got[2].time_limit, got[2].key) == (30.0, "user-7", None, None)
        after = [h.backend.r.hgetall(h.backend.keys.task(t)) for t in ids]
        assert all(v != "" for f in after for v in f.values()) and "queue" not in after[1], after
    finally:
        h.stop()


@pytest.mark.parametrize("where", ["redis_url", "redis_cluster_url"], ids=["redis", "cluster"])
def test_the_api_and_metrics_report_each_queue(where: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from yadtq.api.app import create_app
    from yadtq.client.client import YADTQ

    settings = Settings(redis_url=request.getfixturevalue(where), prefix=f"a{uuid.uuid4().hex[:8]}:",
                        log_dir=str(tmp_path))
    with YADTQ(settings, create_topic=False) as q:  # reads only: no broker needed
        q.backend.record_queued([TaskMessage(f"e{n}", "add", (n, n), queue="email") for n in range(3)], 3)
        with TestClient(create_app(settings, client=q)) as http:
            rows = {row["queue"]: row for row in http.get("/queues").json()}
            assert rows["email"]["queued"] == 3 and rows["default"]["queued"] == 0
            assert rows["email"]["lag"] is not None and rows["email"]["lag"] >= 0
            assert 'yadtq_queue_depth{queue="email"} 3.0' in http.get("/metrics").text
            assert http.get("/dead-letters", params={"queue": "email"}).json() == []
            assert http.get("/dead-letters", params={"queue": "no/such"}).status_code == 422

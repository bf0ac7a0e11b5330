"""The dashboard's two data sources read the same farm alike: `RedisSource` on Redis, `ApiSource`
through the real HTTP API (uvicorn in a thread, bearer token) on that same Redis; and the API
source's actions change what Redis holds. No broker: nothing here publishes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import serve_api

from dashboard import data
from dashboard.api_source import ApiError, ApiSource, ApiUnavailable
from dashboard.redis_source import RedisSource
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import free_port
from yadtq.store.search import TaskQuery
from yadtq.store.worker_commands import take_commands
from yadtq.task.messages import Heartbeat

TOKEN = "dash-t0ken"


@pytest.fixture(params=["redis_url", "redis_cluster_url"], ids=["redis", "cluster"])
def farm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[YADTQ, RedisSource, ApiSource]]:
    """The farm on one Redis, and on a 3-primary Redis Cluster (the readers merge its shards)."""
    redis_url = request.getfixturevalue(request.param)
    u = uuid.uuid4().hex[:8]
    settings = Settings(redis_url=redis_url, kafka_bootstrap=f"127.0.0.1:{free_port()}", prefix=f"d{u}:",
                        topic=f"tasks-{u}", api_token=TOKEN, log_dir=str(tmp_path / "logs"),
                        data_dir=str(tmp_path / "data"))
    with YADTQ(settings) as q, serve_api(settings, q, {"Authorization": f"Bearer {TOKEN}"}) as api:
        yield q, RedisSource(q), ApiSource(settings.replace(dashboard_api=str(api.base_url), redis_url="redis://x:1"))


def _seed(q: YADTQ) -> list[str]:
    """Six queued tasks (two cancelled), a worker with its heartbeat, a count sample, a dead letter."""
    messages = [q.message("add", [i, 1], unchecked=True) for i in range(4)]
    messages += [q.message("multiply", [i, 2], unchecked=True) for i in range(2)]
    q.backend.record_queued(messages, 3)
    ids = [m.task_id for m in messages]
    q.backend.cancel(ids[0], by="test")
    q.backend.cancel(ids[4], by="test")
    now = time.time()
    q.live.put_worker("W1", {"status": "ALIVE", "state": "idle", "host": "h", "pid": 7, "since": now,
                             "last_heartbeat": now, "partitions": [0, 1], "concurrency": 2, "running": [],
                             "partition_state": []})
    q.live.record_heartbeat(Heartbeat("W1", "h", 7, "i1", "idle", None, 0, 0, (0, 1), now))
    q.live.add_sample({"ts": now - 1, **q.backend.counts(), "done_by": {}, "failed_by": {}})
    q.live.add_sample({"ts": now, **q.backend.counts(), "done_by": {"W1": 3}, "failed_by": {}})
    q.live.add_dead_letter({"ts": now, "task_id": "bad-1", "task": "nope", "partition": 0, "offset": 3,
                            "error": "unknown task 'nope'"})
    return ids


def _same(a: Any, b: Any) -> None:
    assert a == b, f"Redis: {a!r}\nAPI:   {b!r}"


def test_both_sources_read_the_same_farm(farm: tuple[YADTQ, RedisSource, ApiSource]) -> None:
    q, redis_src, api_src = farm
    ids = _seed(q)
    _same(redis_src.counts(), api_src.counts())
    assert api_src.counts()["cancelled"] == 2 and api_src.counts()["queued"] == 4
    _same([w["name"] for w in redis_src.workers(300)], [w["name"] for w in api_src.workers(300)])
    _same(redis_src.partitions(), api_src.partitions())
    for query in (TaskQuery(), TaskQuery(statuses=("cancelled",)), TaskQuery(task="multiply")):
        mine, theirs = redis_src.search(query, None, 50), api_src.search(query, None, 50)
        _same([(r.task_id, r.status, r.args) for r in mine.tasks],
              [(r.task_id, r.status, r.args) for r in theirs.tasks])
    assert {r.task_id for r in api_src.search(TaskQuery(statuses=("cancelled",)), None, 50).tasks} == {ids[0], ids[4]}
    mine_t, theirs_t = redis_src.task(ids[1]), api_src.task(ids[1])
    assert mine_t is not None and theirs_t is not None
    _same((mine_t.record.task, mine_t.record.args, mine_t.history, mine_t.waiting_because),
          (theirs_t.record.task, theirs_t.record.args, theirs_t.history, theirs_t.waiting_because))
    assert api_src.task("no-such-task") is None
    t_redis, t_api = redis_src.timeline(900), api_src.timeline(900)
    _same(t_redis.series, t_api.series)
    _same([(b["worker"], b["ts"]) for b in t_redis.heartbeats], [(b["worker"], b["ts"]) for b in t_api.heartbeats])
    _same(t_redis.oldest_queued, t_api.oldest_queued)
    _same(redis_src.type_stats(900), api_src.type_stats(900))
    _same(redis_src.dead_letters(50), api_src.dead_letters(50))
    _same(redis_src.deaths(50), api_src.deaths(50))
    _same([(d.queue, d.queued, d.dead_letters) for d in redis_src.queues()],
          [(d.queue, d.queued, d.dead_letters) for d in api_src.queues()])  # lag: seconds until each read
    _same(redis_src.recent_workflows(50), api_src.recent_workflows(50))
    assert api_src.workflow("wf-none") is None
    # The pages' frames, built from either source, show the same rows.
    o_redis, o_api = data.load_overview(redis_src, 900, 300), data.load_overview(api_src, 900, 300)
    _same(data.types_frame(o_redis.stats).to_dict("records"), data.types_frame(o_api.stats).to_dict("records"))
    assert o_api.throughput_now == o_redis.throughput_now
    _same(data.why_waiting(data.load_farm(redis_src, 300)), data.why_waiting(data.load_farm(api_src, 300)))
    assert api_src.where.startswith("API http://127.0.0.1:")



def test_both_sources_say_the_workers_are_joining_until_one_serves(farm: tuple[YADTQ, RedisSource, ApiSource]) -> None:
    """The Overview's notice and the Workers page's sentence, from the registry the monitor keeps."""
    q, redis_src, api_src = farm
    q.backend.record_queued([q.message("add", [1, 2], unchecked=True)], 3)
    now = time.time()
    joining = {"status": "ALIVE", "state": "joining", "host": "h", "pid": 7, "since": now, "last_heartbeat": now,
               "partitions": [], "concurrency": 2, "running": [], "partition_state": []}
    q.live.put_worker("W1", joining)
    for src in (redis_src, api_src):
        assert (data.load_overview(src, 900, 300).waiting or "").startswith("workers are joining the group (W1)")
        assert "1 task(s) queued; workers are joining the group (W1)" in data.why_waiting(data.load_farm(src, 300))
    q.live.put_worker("W1", {**joining, "state": "idle", "partitions": [0, 1, 2, 3]})
    for src in (redis_src, api_src):
        assert data.load_overview(src, 900, 300).waiting is None
        assert "joining" not in data.why_waiting(data.load_farm(src, 300))

def test_actions_through_the_api_change_redis(farm: tuple[YADTQ, RedisSource, ApiSource]) -> None:
    q, _, api_src = farm
    ids = _seed(q)
    api_src.cancel(ids[2])
    assert q.backend.get(ids[2]).status == "cancelled"
    with pytest.raises(ApiError, match="cancel"):  # 409: only an unfinished task can be cancelled
        api_src.cancel(ids[2])
    api_src.command_worker("W1", "pause")
    assert take_commands(q.redis, q.live.keys, "W1") == ["pause"]
    with pytest.raises(ApiError) as unknown:
        api_src.command_worker("W9", "pause")
    assert unknown.value.status == 404
    assert api_src.add_schedule("every-10", "add", 10, None, [1, 2], "once") == "every-10: every 10s"
    assert [s.spec.name for s in q.schedules()] == ["every-10"]
    api_src.remove_schedule("every-10")
    assert q.schedules() == []
    assert api_src.purge("cancelled") == 3
    assert q.backend.counts()["cancelled"] == 0
    # A wrong token, and an API that does not answer, are errors the page can show.
    wrong = ApiSource(api_src.settings.replace(api_token="wrong"))
    with pytest.raises(ApiError, match="bearer token"):
        wrong.counts()
    with pytest.raises(ApiUnavailable, match="cannot reach the YADTQ API"):
        ApiSource(api_src.settings.replace(dashboard_api=f"http://127.0.0.1:{free_port()}")).counts()

"""step.lua gathers a step's index moves and writes them per index (a real Redis): what the indexes
and the per-worker counts hold when the call returns is what one move per task would leave."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from yadtq.config import Settings
from yadtq.store.backend import Backend
from yadtq.store.claims import Claim, ClaimPipeline, Outcome, Run
from yadtq.store.connection import RedisClient, connect_redis
from yadtq.store.keys import Keys
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status
from yadtq.worker.records import TaskWork


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, prefix=f"m{uuid.uuid4().hex[:8]}:", topic="jobs")


@pytest.fixture
def client(settings: Settings) -> Iterator[RedisClient]:
    c = connect_redis(settings)
    yield c
    c.close()


def _claim(m: TaskMessage, offset: int) -> Claim:
    return Claim(TaskWork(m, m.digest), 0, offset)


def _index(client: RedisClient, keys: Keys, status: str) -> set[str]:
    return {x.decode() if isinstance(x, bytes) else x for x in client.zrange(keys.status(status), 0, -1)}


def test_a_retry_stored_and_claimed_again_in_one_step_ends_in_processing_only(client: RedisClient,
                                                                              settings: Settings) -> None:
    keys = Keys(settings.prefix)
    ms = [TaskMessage(f"t{i}", "add", (i, 1), {}, 3, None, None) for i in range(3)]
    Backend(client, settings).record_queued(ms, 3)
    pipe = ClaimPipeline(client, settings, "W1", "W1:1")
    _, runs = pipe.step([], [_claim(m, i) for i, m in enumerate(ms)])
    assert all(isinstance(r, Run) for r in runs)
    fences = [r.fence for r in runs if isinstance(r, Run)]
    assert _index(client, keys, Status.PROCESSING) == {"t0", "t1", "t2"}
    assert _index(client, keys, Status.QUEUED) == set()
    stored, [again] = pipe.step([Outcome("t0", fences[0], Status.SUCCESS, "2"),
                                 Outcome("t1", fences[1], "retry", error="x"),
                                 Outcome("t2", fences[2], Status.SUCCESS, "3")], [_claim(ms[1], 9)])
    assert stored == [True, True, True] and isinstance(again, Run) and again.attempt == 2
    assert _index(client, keys, Status.SUCCESS) == {"t0", "t2"}
    assert _index(client, keys, Status.PROCESSING) == {"t1"} and _index(client, keys, Status.QUEUED) == set()
    assert client.hget(keys.done_by, "W1") in (b"2", "2")


def test_a_step_larger_than_one_calls_arguments_moves_every_task(client: RedisClient, settings: Settings) -> None:
    keys = Keys(settings.prefix)
    n = 1100  # over the script's CHUNK of arguments for both its ZREM and its ZADD
    ms = [TaskMessage(f"t{i}", "add", (i, 1), {}, 3, None, None) for i in range(n)]
    Backend(client, settings).record_queued(ms, 3)
    pipe = ClaimPipeline(client, settings, "W1", "W1:1")
    _, runs = pipe.step([], [_claim(m, i) for i, m in enumerate(ms)])
    assert len(_index(client, keys, Status.PROCESSING)) == n and _index(client, keys, Status.QUEUED) == set()
    stored, _ = pipe.step([Outcome(m.task_id, r.fence, Status.SUCCESS, "1") for m, r in zip(ms, runs, strict=True)
                           if isinstance(r, Run)], [])
    assert stored == [True] * n
    assert len(_index(client, keys, Status.SUCCESS)) == n and _index(client, keys, Status.PROCESSING) == set()
    assert client.hget(keys.done_by, "W1") in (str(n).encode(), str(n))


def test_a_new_attempt_starts_without_the_last_ones_progress(client: RedisClient, settings: Settings) -> None:
    keys = Keys(settings.prefix)
    m = TaskMessage("t-p", "add", (1, 1), {}, 3, None, None)
    Backend(client, settings).record_queued([m], 3)
    pipe = ClaimPipeline(client, settings, "W1", "W1:1")
    _, [run] = pipe.step([], [_claim(m, 0)])
    assert isinstance(run, Run)
    client.hset(keys.task("t-p"), mapping={"progress": "0.5", "progress_message": "halfway"})  # as progress.lua
    _, [again] = pipe.step([Outcome("t-p", run.fence, "retry", error="x")], [_claim(m, 1)])
    assert isinstance(again, Run) and again.attempt == 2
    assert client.hmget(keys.task("t-p"), "progress", "progress_message") == [None, None]

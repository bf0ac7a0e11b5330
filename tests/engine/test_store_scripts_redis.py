"""The one Lua loader against a real Redis: scripts run by EVALSHA, never EVAL, and survive
SCRIPT FLUSH (a Redis restart forgets its scripts): NOSCRIPT loads them again, in pipelines too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from yadtq.config import Settings
from yadtq.store.backend import Backend
from yadtq.store.connection import RedisClient, connect_redis
from yadtq.store.keys import Keys
from yadtq.store.live_state import LiveState
from yadtq.store.worker_names import claim_worker_name, release_worker_name, renew_worker_name
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, prefix=f"t{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def client(settings: Settings) -> Iterator[RedisClient]:
    c = connect_redis(settings)
    yield c
    c.close()


def _calls(client: RedisClient) -> dict[str, int]:
    stats = client.info("commandstats")
    return {cmd: int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)) for cmd in ("eval", "evalsha")}


def test_scripts_run_by_evalsha_and_reload_after_a_flush(client: RedisClient, settings: Settings) -> None:
    backend, keys = Backend(client, settings), Keys(settings.prefix)
    client.script_flush()
    before = _calls(client)
    m = TaskMessage("t1", "add", (1, 2), {}, 3, None, None)
    assert backend.record_queued([m], 3) == ["new"]  # a pipeline: loaded before it runs
    client.script_flush()
    assert backend.record_queued([m], 3) == [Status.QUEUED]  # the same id again: idempotent
    client.script_flush()
    assert backend.cancel("t1").status == Status.CANCELLED  # a direct call: NOSCRIPT, load, EVALSHA
    client.script_flush()
    assert claim_worker_name(client, keys, "w", "w:1", 5.0)
    client.script_flush()
    assert renew_worker_name(client, keys, "w", "w:1", 5.0)
    release_worker_name(client, keys, "w", "w:1")
    assert not client.exists(keys.worker_name("w"))
    live = LiveState(client, settings)
    client.script_flush()
    assert not live.mark_end("tasks", "e1", 0, 2)
    assert live.mark_end("tasks", "e1", 1, 2)
    after = _calls(client)
    assert after["eval"] == before["eval"], "a script was sent whole with EVAL"
    assert after["evalsha"] > before["evalsha"]

"""Keys kept and retention, on a real Redis: every path that publishes a task again keeps its ordering
key; finished records leave Redis with every index entry of theirs when their time is up.

The client's broker side is replaced by a recorder (`Recording`) that keeps what would be published:
what is under test is which message each path builds from the record; the routing of a message by
its key is the client's one `_send` (and the system test of a broker restart checks the partitions).
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_for
from worker_harness import CountingSource, Harness, Ledger, make_registry

import yadtq.client.client
import yadtq.monitor.recovery
from yadtq.client.client import YADTQ
from yadtq.client.line_producer import produce
from yadtq.config import Settings
from yadtq.errors import TaskNotFound
from yadtq.logs import EventLog
from yadtq.monitor.recovery import Recovery
from yadtq.store.live_state import LiveState
from yadtq.store.retention import Retention, keep_for
from yadtq.store.search import TaskQuery, search
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status
from yadtq.worker import Worker


def settings_for(redis_url: str, tmp_path: Path, **changes: Any) -> Settings:
    return Settings(redis_url=redis_url, prefix=f"k{uuid.uuid4().hex[:8]}:", partitions=2, log_dir=str(tmp_path),
                    concurrency=4, lease=2.0, retry_backoff=0.2, max_buffered=200).replace(**changes)


class Recording(YADTQ):
    """A client whose publishing is recorded instead of sent."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, create_topic=False)
        self.sent: list[TaskMessage] = []

    @property
    def producer(self) -> Any:
        return None

    def _send(self, messages: Sequence[TaskMessage], wait: bool) -> None:
        self.sent.extend(messages)

    def sent_keys(self) -> dict[str, str | None]:
        out = {m.task_id: m.key for m in self.sent}
        self.sent.clear()
        return out


def test_the_key_is_in_the_record_and_every_path_that_publishes_again_keeps_it(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yadtq.client.client, "ensure_topic", lambda *a: None)
    monkeypatch.setattr(yadtq.monitor.recovery, "ensure_topic", lambda *a: None)
    q = Recording(settings_for(redis_url, tmp_path))
    # submit_many with dict specs, and `produce` JSON lines: the key is recorded and sent
    keyed, plain = q.submit_many([{"task": "add", "args": [1, 2], "key": "acct-1"}, ("add", [3, 4])])
    line = json.dumps({"task-id": "line-1", "task": "add", "args": [1, 2], "key": "acct-2"})
    produce(q, [line], out=io.StringIO(), err=io.StringIO(), events=EventLog(None, "producer", stream=io.StringIO()))
    everything = {keyed: "acct-1", plain: None, "line-1": "acct-2"}
    assert q.sent_keys() == everything
    for tid, key in everything.items():
        assert q.status(tid).as_dict()["key"] == key
    # requeue (the client, the API, the dashboard; `yadtq dlq requeue` too: see the next test)
    assert q.requeue(keyed) == keyed
    assert q.sent_keys() == {keyed: "acct-1"}
    # `yadtq requeue --stale`
    assert sorted(q.requeue_stale(0.0)) == sorted(everything)
    assert q.sent_keys() == everything
    # the monitor's republish after a broker restart (every queued task of an earlier broker epoch)
    Recovery(q, EventLog(None, "monitor", stream=io.StringIO())).after_restart()
    assert q.sent_keys() == everything
    q.close()


@pytest.fixture
def h(redis_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(settings_for(redis_url, tmp_path, result_ttl=1.0, failed_ttl=2.5, sweep_interval=0.2),
                      CountingSource(2), Ledger())
    yield harness
    harness.stop()


def test_a_delayed_task_is_published_when_due_with_its_key(h: Harness) -> None:
    q = Recording(h.settings)
    tid = q.submit("add", [1, 2], key="acct-5", countdown=0.3, unchecked=True)  # recorded `scheduled`, not sent
    assert not q.sent_keys() and q.status(tid).as_dict()["key"] == "acct-5"
    h.source.assign([0, 1])
    h.worker()
    h.wait_done([tid])
    published = [r for part in h.source.log for r in part if json.loads(r.value or b"{}").get("task-id") == tid]
    assert [r.key for r in published] == [b"acct-5"]
    q.close()


def test_a_dead_letter_requeue_keeps_the_key(h: Harness) -> None:
    """(A keyed retry is never published again: it waits in place, holding its key.)"""
    h.source.assign([0, 1])
    h.worker()
    bad = h.submit("boom", "fail", key="acct-9")
    h.wait_done([bad])
    q = Recording(h.settings)
    assert [d["task_id"] for d in q.live.dead_letters()] == [bad]
    q.requeue(bad)  # what `yadtq dlq requeue` does
    assert q.sent_keys() == {bad: "acct-9"} and not q.live.dead_letters()
    q.close()


def test_finished_records_leave_every_index_when_their_time_is_up(h: Harness) -> None:
    """The farm keeps successes 2 s here, failures 3 s; a task's own result_ttl (0.5 s) and a submit's own
    (0.5 s, or 0: forever) win over the farm's; a dead letter is kept as long as a failure."""
    s = h.settings.replace(result_ttl=2.0, failed_ttl=3.0)
    registry = make_registry(h.ledger)
    registry.register(lambda x: x, "brief", result_ttl=0.5)
    h.source.assign([0, 1])
    w = Worker(s, registry, "W1", source=h.source)
    w.connect()
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    h.workers.append((w, thread))
    brief, plain, bad = h.submit("brief", 1), h.submit("add", 1, 2), h.submit("boom", "fail")
    for tid, ttl in (("own", 0.5), ("kept", 0.0)):
        own = TaskMessage(tid, "add", (1, 1), {}, 1, time.time(), None, None, result_ttl=ttl)
        h.backend.record_queued([own], 3)
        h.source.append(own.encode(), own.record_key)
    h.wait_done([brief, plain, bad, "own", "kept"])
    r, keys, live = h.r, h.backend.keys, LiveState(h.r, s)
    # A named queue's dead letters (their own list) are kept as long as the default queue's.
    r.sadd(keys.queues, "email")
    r.lpush(keys.dlq_of("email"), json.dumps({"task_id": "mail-1", "queue": "email", "ts": time.time()}))
    assert [d["task_id"] for d in live.dead_letters()] == [bad]
    wait_for(lambda: r.hget(keys.task(plain), "expires_at") and r.hget(keys.task(bad), "expires_at"), 10, 0.05,
             "the sweep to give the finished tasks their expiry")

    def kept_for(tid: str) -> float:
        rec = r.hmget(keys.task(tid), "expires_at", "finished")
        return round(float(rec[0]) - float(rec[1]), 3)

    assert (kept_for(plain), kept_for(bad)) == (2.0, 3.0), "the farm's retention, a failure's own"
    assert r.hget(keys.task("kept"), "expires_at") is None, "0 keeps it forever"
    wait_for(lambda: not r.exists(keys.task(brief)) and not r.exists(keys.task("own")), 10, 0.05,
             "the task's own and the submit's own retention to end")
    assert r.zscore(keys.status(Status.SUCCESS), brief) is None, "its id stayed in the index"

    wait_for(lambda: not r.exists(keys.task(plain)), 10, 0.05, "the farm's retention to end")
    wait_for(lambda: not r.exists(keys.task(bad)) and not live.dead_letters(), 10, 0.05,
             "the failure and its dead letter to go")
    wait_for(lambda: not live.dead_letters(10, "email"), 10, 0.05, "the named queue's dead letter to go")
    assert not r.exists(keys.events(bad)) and r.zcard(keys.expiry) == 0
    assert h.backend.counts() == {**{st: 0 for st in Status}, Status.SUCCESS: 1}  # "kept" only
    assert [t.task_id for t in search(h.backend, TaskQuery()).tasks] == ["kept"]
    with pytest.raises(TaskNotFound):
        h.backend.get(brief)


def test_a_requeued_task_is_not_swept_and_its_new_finish_counts(redis_url: str, tmp_path: Path) -> None:
    s = settings_for(redis_url, tmp_path, result_ttl=0.3)
    q = Recording(s)
    sweeper = Retention(q.redis, s)
    tid = q.submit("add", [1, 2], unchecked=True)
    q.backend.cancel(tid)
    assert sweeper.sweep().indexed == 1 and q.redis.hget(q.backend.keys.task(tid), "expires_at")
    expired_at = float(q.redis.hget(q.backend.keys.task(tid), "expires_at") or 0)
    q.requeue(tid)  # queued again: no longer finished
    wait_for(lambda: _redis_now(q) > expired_at, 5, 0.05, "the expiry it had as a cancelled task to pass")
    assert sweeper.sweep().deleted == 0 and q.status(tid).status == Status.QUEUED
    q.backend.cancel(tid)
    sweeper.sweep()
    wait_for(lambda: sweeper.sweep().deleted == 1, 5, 0.05, "the record to go 0.3 s after its new finish")
    assert q.backend.counts()[Status.CANCELLED] == 0 and q.redis.zcard(q.backend.keys.expiry) == 0
    q.close()


def _redis_now(q: YADTQ) -> float:
    sec, usec = q.redis.time()
    return float(sec + usec / 1e6)


def test_keep_for_rules() -> None:
    s = Settings(result_ttl=86_400, failed_ttl=7 * 86_400)
    assert keep_for(Status.SUCCESS, None, None, s) == 86_400
    assert keep_for(Status.SUCCESS, None, 30, s) == 30  # the task's own
    assert keep_for(Status.SUCCESS, 5, 30, s) == 5  # the submit's own wins
    assert keep_for(Status.FAILED, 5, None, s) == 7 * 86_400  # failures are kept longer
    assert keep_for(Status.FAILED, 30 * 86_400, None, s) == 30 * 86_400
    assert keep_for(Status.FAILED, 0, None, s) == 0 and keep_for(Status.SUCCESS, None, 0, s) == 0  # 0: forever
    assert keep_for(Status.FAILED, None, None, s.replace(failed_ttl=0)) == 0


def _prefix_bytes(r: redis.Redis, prefix: str) -> tuple[int, int]:
    """(keys, bytes by MEMORY USAGE) under `prefix`, but for the sweep's timer (a key that comes and goes)."""
    keys = [k for k in r.scan_iter(f"{prefix}*", count=1000) if k != f"{prefix}retention:lock"]
    return len(keys), sum(int(r.memory_usage(k) or 0) for k in keys)


def test_many_short_lived_tasks_leave_redis_as_it_was(h: Harness) -> None:
    """1,000 tasks kept 1 s: once swept, the keys and bytes under the prefix are back to the baseline
    (taken after a first task, so the farm's fixed keys exist), and so is most of Redis's used_memory."""
    h.source.assign([0, 1])
    w = h.worker(concurrency=8)
    first = h.submit("add", 0, 0)
    wait_for(lambda: w.done == 1 and not h.r.exists(h.backend.keys.task(first)), 10, 0.05, "the first task to go")
    base_keys, base_bytes = _prefix_bytes(h.r, h.settings.prefix)
    base_used = int(h.r.info("memory")["used_memory"])
    messages = [TaskMessage(uuid.uuid4().hex, "add", (i, 1), {}, 3, time.time()) for i in range(1000)]
    h.backend.record_queued(messages, 3)  # all recorded before any runs: the most they hold at once
    peak_keys, peak_bytes = _prefix_bytes(h.r, h.settings.prefix)
    peak_used = int(h.r.info("memory")["used_memory"])
    assert peak_keys >= base_keys + 1000
    for m in messages:
        h.source.append(m.encode(), m.record_key)
    wait_for(lambda: w.done == 1001, 60, 0.05, "1,000 tasks to run")
    wait_for(lambda: _prefix_bytes(h.r, h.settings.prefix)[0] <= base_keys, 20, 0.1, "the records to be swept")
    after_keys, after_bytes = _prefix_bytes(h.r, h.settings.prefix)
    after_used = int(h.r.info("memory")["used_memory"])
    print(f"keys {base_keys} -> {peak_keys} -> {after_keys}; bytes {base_bytes} -> {peak_bytes} -> {after_bytes};"
          f" used_memory {base_used} -> {peak_used} -> {after_used}")
    assert after_keys == base_keys and after_bytes <= base_bytes + 256
    # used_memory also counts Redis's own (client buffers, the allocator's pools): it comes down, not to the byte
    assert after_used < peak_used


def test_a_submit_clears_the_withdrawn_marks_of_every_id_it_records(redis_url: str, tmp_path: Path) -> None:
    """An undone submit's ids refuse a late message (withdrawn:<id>); recording an id again clears
    its mark, for each id of a chunk (submit.lua clears them in one call) and no other id's."""
    s = settings_for(redis_url, tmp_path)
    q = Recording(s)
    ids = [f"w-{i}" for i in range(5)]
    token = "t-undone"
    q.backend.record_queued([TaskMessage(t, "add", (i, 1)) for i, t in enumerate(ids)], 3, token)
    assert sorted(q.backend.unsubmit(ids, token)) == ids
    assert [q.redis.exists(q.backend.keys.withdrawn(t)) for t in ids] == [1] * 5
    again = ids[:3]
    verdicts = q.backend.record_queued([TaskMessage(t, "add", (i, 1)) for i, t in enumerate(again)], 3, "t-again")
    assert verdicts == ["new"] * 3
    assert [q.redis.exists(q.backend.keys.withdrawn(t)) for t in ids] == [0, 0, 0, 1, 1]
    q.close()

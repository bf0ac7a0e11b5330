"""The engine's invariants in-process: an in-memory task source, a real Redis, a real `Worker`.

Each test runs in well under a second or two; the process tests (tests/system: test_guarantees,
test_chaos) keep what only processes show (kill -9, SIGSTOP).
"""

from __future__ import annotations

import asyncio
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

from yadtq.config import Settings
from yadtq.store.backend import Backend
from yadtq.store.claims import Busy, Claim, ClaimPipeline, Run
from yadtq.store.connection import connect_redis
from yadtq.task.messages import TaskMessage, body_digest
from yadtq.task.outcomes import Fail, Retry
from yadtq.task.registry import Registry
from yadtq.worker import MemorySource, Worker
from yadtq.worker.context import WorkerContext
from yadtq.worker.jobs import Finished
from yadtq.worker.middleware import Middleware
from yadtq.worker.records import Record, TaskWork


class Ledger:
    """Every execution of every task, as the tasks themselves record it."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()  # holds a "gated" task until the test opens it

    def add(self, name: str, start: float) -> None:
        with self.lock:
            self.runs.append((name, start, time.monotonic()))


def make_registry(ledger: Ledger) -> Registry:
    reg = Registry()

    @reg.task("add")
    def add(x: int, y: int) -> int:
        return x + y

    @reg.task("sleep")
    def sleep(seconds: float, tag: str = "") -> str:
        start = time.monotonic()
        time.sleep(seconds)
        ledger.add(tag or f"sleep{seconds}", start)
        return tag

    @reg.task("gated")
    def gated(tag: str) -> str:
        start = time.monotonic()
        ledger.gate.wait(30)
        ledger.add(tag, start)
        return tag

    @reg.task("flaky")
    def flaky(tag: str) -> str:
        with ledger.lock:
            seen = sum(1 for r in ledger.runs if r[0] == tag)
        ledger.add(tag, time.monotonic())
        if seen == 0:
            raise Retry("first try fails", delay=0.3)
        return "ok"

    @reg.task("boom")
    def boom(kind: str) -> None:
        if kind == "exit":
            raise SystemExit(0)
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "fail":
            raise Fail("no point retrying")
        raise ValueError("bad value")

    @reg.task("result")
    def result(kind: str) -> Any:
        return {"nan": float("nan"), "big": "x" * 5000, "set": {1}}[kind]

    @reg.task("spin", time_limit=0.3)
    def spin() -> None:
        while True:
            pass

    @reg.task("asleep")
    async def asleep(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    return reg


class CountingSource(MemorySource):
    """Counts the worker's commit rounds (one `remember_lows` call each, committing or not), so that a
    test can wait until the worker has had its chances to do something rather than sleep."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.commit_rounds = 0

    def remember_lows(self, lows: dict[int, int]) -> None:
        self.commit_rounds += 1


class Harness:
    def __init__(self, settings: Settings, source: CountingSource, ledger: Ledger) -> None:
        self.settings = settings
        self.source = source
        self.ledger = ledger
        self.r = connect_redis(settings)  # a RedisCluster client on a redis+cluster:// URL (test_redis_cluster_engine)
        self.backend = Backend(self.r, settings)
        self.workers: list[tuple[Worker, threading.Thread]] = []

    def worker(self, name: str = "W1", source: MemorySource | None = None,
               middleware: Sequence[Middleware] = (), **overrides: Any) -> Worker:
        s = self.settings.replace(**overrides) if overrides else self.settings
        w = Worker(s, make_registry(self.ledger), name, source=source or self.source, middleware=middleware)
        w.connect()
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        self.workers.append((w, t))
        return w

    def submit(self, task: str, *args: Any, key: str | None = None, task_id: str | None = None,
               tries: int | None = None, partition: int | None = None, token: str = "", **kwargs: Any) -> str:
        m = TaskMessage(task_id or uuid.uuid4().hex, task, args, kwargs, tries, time.time(), None, key)
        self.backend.record_queued([m], self.settings.tries, token=token)
        self.source.append(m.encode(), (key or m.task_id).encode(), partition)
        return m.task_id

    def status(self, task_id: str) -> str:
        return self.backend.get(task_id).status

    def rounds_pass(self, n: int = 3) -> None:
        """Waits until the worker has run `n` more commit rounds (one every 0.05 s while it loops)."""
        until = self.source.commit_rounds + n
        wait_for(lambda: self.source.commit_rounds >= until, 10, 0.01, f"{n} commit rounds of the worker")

    def events(self, name: str = "W1") -> list[dict[str, Any]]:
        """The worker's event stream so far (it flushes the file on every poll)."""
        path = Path(self.settings.log_dir) / f"worker-{name}.events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]

    def wait_done(self, ids: list[str], timeout: float = 20) -> None:
        wait_for(lambda: all(self.status(i) in ("success", "failed") for i in ids), timeout,
                 what=f"{len(ids)} tasks finished")

    def stop(self) -> None:
        for w, t in self.workers:
            w.stop()
            t.join(timeout=15)
        self.r.close()


@pytest.fixture
def h(redis_url: str, tmp_path: Path) -> Iterator[Harness]:
    u = uuid.uuid4().hex[:8]
    settings = Settings(redis_url=redis_url, prefix=f"u{u}:", topic="tasks", partitions=2, log_dir=str(tmp_path),
                        concurrency=4, lease=2.0, retry_backoff=0.2, max_buffered=50, time_limit_grace=0.5,
                        max_result_bytes=1000)
    source = CountingSource(2)
    harness = Harness(settings, source, Ledger())
    yield harness
    harness.stop()


def test_many_tasks_run_at_once_and_a_slow_task_holds_one_slot(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker()
    # The slow task runs until the test opens its gate, so "the quick ones finished first" holds
    # however slowly a loaded machine runs them.
    slow = h.submit("gated", tag="slow", partition=0)
    quick = [h.submit("sleep", 0.05, tag=f"q{i}", partition=0) for i in range(12)]
    h.wait_done([*quick], timeout=10)
    assert h.status(slow) == "processing", "12 quick tasks behind a slow one in its partition finished first"
    h.ledger.gate.set()
    h.wait_done([slow])
    starts = sorted(s for _, s, _ in h.ledger.runs)
    # Four slots: at some moment four tasks ran together.
    overlaps = max(sum(1 for _, s, e in h.ledger.runs if s <= t < e) for t in starts)
    assert overlaps == 4


class Watching(Middleware):
    """A plugin the loop knows nothing about: it sees outcomes, commits and the worker's notices."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str, bool]] = []
        self.notices: list[str] = []
        self.committed: dict[int, int] = {}
        self.contexts: set[type] = set()

    def after_complete(self, ctx: WorkerContext, finished: Finished, stored: bool) -> None:
        self.contexts.add(type(ctx))
        self.outcomes.append((finished.job.task_id, finished.status, stored))

    def after_commit(self, ctx: WorkerContext, offsets: dict[int, int]) -> None:
        self.committed.update(offsets)

    def on_notice(self, ctx: WorkerContext, event: str, fields: dict[str, Any]) -> None:
        self.notices.append(event)


def test_a_plugin_registered_with_the_worker_sees_its_hooks_through_the_context(h: Harness) -> None:
    h.source.assign([0])
    plugin = Watching()
    h.worker(middleware=[plugin])
    ok, bad = h.submit("add", 1, 2, partition=0), h.submit("boom", "fail", partition=0)
    h.wait_done([ok, bad])
    wait_for(lambda: plugin.committed.get(0) == 2, 5, what="the commit seen by the plugin")
    assert sorted(plugin.outcomes) == sorted([(ok, "success", True), (bad, "failed", True)])
    assert plugin.contexts == {WorkerContext}, "a plugin is handed the context, never the worker"
    assert {"connected", "worker_joined", "partitions_assigned", "task_received"} <= set(plugin.notices)


def test_offsets_commit_only_up_to_the_lowest_unfinished_record(h: Harness) -> None:
    h.source.assign([0])
    h.worker()
    slow = h.submit("sleep", 0.8, tag="slow", partition=0)
    quick = [h.submit("add", i, 1, partition=0) for i in range(5)]
    h.wait_done(quick)
    h.rounds_pass()
    assert h.source.committed_offsets.get(0, 0) == 0, "committed past the slow task while it runs"
    h.wait_done([slow])
    wait_for(lambda: h.source.committed_offsets.get(0) == 6, 5, what="commit after the slow task")


def test_same_key_runs_one_at_a_time_in_order_and_other_keys_overtake(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker()
    ids = [h.submit("sleep", 0.1, tag=f"k{i}", key="customer-42") for i in range(5)]
    other = h.submit("sleep", 0.01, tag="other", key="customer-7", partition=None)
    h.wait_done([*ids, other])
    runs = [r for r in h.ledger.runs if r[0].startswith("k")]
    assert [r[0] for r in sorted(runs, key=lambda r: r[1])] == [f"k{i}" for i in range(5)]
    for (_, _, end), (_, start, _) in zip(sorted(runs, key=lambda r: r[1]), sorted(runs, key=lambda r: r[1])[1:],
                                          strict=False):
        assert start >= end, "two tasks of one key overlapped"


def test_a_retry_is_parked_and_its_partition_moves_on(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker()
    flaky = h.submit("flaky", "F", partition=0)
    later = [h.submit("add", i, 2, partition=0) for i in range(3)]
    h.wait_done(later)
    assert h.status(flaky) == "queued"
    assert h.r.zscore(h.backend.keys.retries, flaky) is not None, "the retry is not parked in Redis"
    h.wait_done([flaky])
    rec = h.backend.get(flaky)
    assert rec.status == "success" and rec.attempts == 2
    assert sum(len(p) for p in h.source.log) == 5, "the retry was not published again, once"
    wait_for(lambda: h.r.zcard(h.backend.keys.retries) == 0, 5, what="retries set emptied")


def test_a_task_that_ends_leaves_its_queue_index_and_its_submit_token(h: Harness) -> None:
    """Redis memory per finished task: the step that stores an end takes the id out of its queue's
    index and drops what only a queued or running task needs (the submit's token, the owner, the
    lease, the broker epoch); a task still running keeps them (a retry counts in its queue's depth
    again, unsubmit.lua reads the token of a queued one, renew the owner of a running one)."""
    h.source.assign([0, 1])
    h.r.set(h.backend.keys.broker_epoch, "E1")
    h.worker()
    index = h.backend.keys.queue_index("default")
    ok, bad = h.submit("add", 1, 2, token="t1"), h.submit("boom", "fail", tries=1, token="t1")
    running = h.submit("gated", tag="held", token="t1")
    h.wait_done([ok, bad])
    wait_for(lambda: h.status(running) == "processing", 10, what="the gated task running")
    assert h.r.zrange(index, 0, -1) == [running]
    gone = ("submit_token", "owner", "lease", "epoch")
    assert [[h.r.hexists(h.backend.keys.task(t), f) for f in gone] for t in (ok, bad, running)] == \
        [[False] * 4, [False] * 4, [True] * 4]
    h.ledger.gate.set()
    h.wait_done([running])
    assert h.r.zcard(index) == 0
    assert (h.status(ok), h.status(bad), h.status(running)) == ("success", "failed", "success")


@pytest.mark.parametrize("kind", ["exit", "interrupt", "fail", "value"])
def test_any_exception_a_task_raises_is_its_failure_never_the_workers_end(h: Harness, kind: str) -> None:
    h.source.assign([0, 1])
    w = h.worker()
    tid = h.submit("boom", kind, tries=2)
    h.wait_done([tid])
    rec = h.backend.get(tid)
    assert rec.status == "failed"
    assert rec.attempts == (1 if kind == "fail" else 2)
    after = h.submit("add", 1, 2)
    h.wait_done([after])
    assert h.status(after) == "success" and not w._stop.is_set()


@pytest.mark.parametrize("kind", ["nan", "big", "set"])
def test_results_that_are_not_strict_json_or_too_big_fail_the_task(h: Harness, kind: str) -> None:
    h.source.assign([0, 1])
    h.worker()
    tid = h.submit("result", kind)
    h.wait_done([tid])
    rec = h.backend.get(tid)
    assert rec.status == "failed" and rec.attempts == 1
    expected = {"nan": "not strict JSON", "big": "exceeds YADTQ_MAX_RESULT_BYTES", "set": "not JSON-serialisable"}
    assert expected[kind] in (rec.error or ""), rec.error


def test_a_time_limit_interrupts_a_running_thread(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker()
    tid = h.submit("spin", tries=1)
    h.wait_done([tid], timeout=10)
    assert "TimeLimitExceeded" in (h.backend.get(tid).error or "")


def test_async_tasks_share_one_event_loop(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker(concurrency=8)
    t0 = time.monotonic()
    ids = [h.submit("asleep", 0.5) for _ in range(8)]
    h.wait_done(ids)
    assert time.monotonic() - t0 < 3.5, "eight 0.5 s async tasks did not overlap"
    assert {h.backend.get(i).result for i in ids} == {0.5}


def test_bad_records_are_rejected_once_and_never_touch_another_task(h: Harness) -> None:
    h.source.assign([0])
    h.worker()
    real = h.submit("sleep", 0.5, tag="real", partition=0)
    h.source.append(json.dumps({"task-id": real, "task": "nope", "args": []}).encode(), partition=0)
    h.source.append(json.dumps({"task-id": real, "task": "add", "args": [5, 5]}).encode(), partition=0)
    h.source.append(b"[" * 100_000, partition=0)
    h.source.append(b"\xff\xfe not json", partition=0)
    h.wait_done([real])
    rec = h.backend.get(real)
    assert rec.status == "success" and rec.result == "real", "a foreign record changed the task"
    wait_for(lambda: len(h.source.published.get("tasks.dlq", [])) == 4, 5, what="four dead letters")
    wait_for(lambda: h.source.committed_offsets.get(0) == 5, 5, what="every record committed")


def test_a_joining_worker_is_given_partitions_and_keeps_order_across_the_handover(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker("W1")
    ids = [h.submit("sleep", 0.05, tag=f"k{i}", key="acct", partition=0) for i in range(10)]
    wait_for(lambda: sum(1 for r in h.ledger.runs if r[0].startswith("k")) >= 3, 10, what="3 keyed tasks ran")
    h.source.revoke([0])
    second = MemorySource(2)
    second.log = h.source.log
    second.committed_offsets = h.source.committed_offsets
    second.lock = h.source.lock
    h.worker("W2", source=second)
    second.assign([0])
    h.wait_done(ids)
    tags = [r[0] for r in sorted(h.ledger.runs, key=lambda r: r[1]) if r[0].startswith("k")]
    assert tags == [f"k{i}" for i in range(10)], tags


def test_a_commit_made_in_a_lost_log_is_not_trusted(h: Harness) -> None:
    """After a memory-only broker restart, a worker that had not heard of it yet may commit an offset
    of the old log into the new one. The next owner, knowing the new epoch, reads from the start."""
    h.r.set(h.backend.keys.broker_epoch, "E2")
    stale = [h.submit("sleep", 0.01, tag=f"stale{i}", partition=0) for i in range(4)]
    fresh = [h.submit("sleep", 0.01, tag=f"fresh{i}", partition=1) for i in range(4)]
    h.source.committed_offsets.update({0: 2, 1: 2})
    h.source.committed_tags.update({0: "E1", 1: "E2"})  # 0: committed before the restart; 1: in this log
    h.source.assign([0, 1])
    h.worker()
    h.wait_done(stale + fresh[2:])
    assert [h.status(t) for t in fresh[:2]] == ["queued", "queued"], "a commit of this log was not trusted"
    wait_for(lambda: h.source.committed_tags.get(0) == "E2", 5, what="commits noted with the epoch known")


def test_a_commit_made_without_knowing_the_epoch_is_not_trusted(h: Harness) -> None:
    """A worker that could not read the epoch (Redis away at its start) notes none with its commits:
    such a commit may belong to any log, so the next owner reads the partition from the start."""
    h.r.set(h.backend.keys.broker_epoch, "E2")
    ids = [h.submit("sleep", 0.01, tag=f"u{i}", partition=0) for i in range(4)]
    h.source.committed_offsets[0] = 2
    h.source.committed_tags[0] = ""
    h.source.assign([0])
    h.worker()
    h.wait_done(ids)


def test_a_partition_coming_back_after_the_broker_lost_its_log_is_read_from_the_new_start(h: Harness) -> None:
    """kafka-python keeps a returning partition's old position; in a new, shorter log nothing lies there."""
    h.r.set(h.backend.keys.broker_epoch, "E1")
    h.source.assign([0])
    h.worker()
    first = [h.submit("add", i, 1, partition=0) for i in range(10)]
    h.wait_done(first)
    h.source.revoke([0])
    h.source.lose_log()
    h.r.set(h.backend.keys.broker_epoch, "E2")
    # The worker hears of the new epoch (it reads it every 2 s) while it owns nothing.
    wait_for(lambda: any(e["event"] == "broker_log_restarted" and e.get("epoch") == "E2" for e in h.events()), 10,
             0.05, "the worker to hear of the new epoch")
    again = [h.submit("add", i, 2, partition=0) for i in range(3)]  # offsets 0-2 of the new log
    h.source.assign([0])
    h.wait_done(again)


class HangingAfterDelivery(MemorySource):
    """Once it has delivered a record, its next poll hangs until the test releases it, like a broker
    call while the broker is away."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.got = False
        self.hanging = threading.Event()
        self.release = threading.Event()

    def poll(self, timeout: float, max_records: int | None = None) -> list[Record]:
        if self.got:
            self.got = False
            self.hanging.set()
            self.release.wait(30)
        out = super().poll(timeout, max_records)
        self.got = bool(out)
        return out


def test_claims_are_renewed_even_when_the_loop_blocks_right_after_claiming(h: Harness) -> None:
    source = HangingAfterDelivery(2)
    source.assign([0, 1])
    w = h.worker(source=source)
    m = TaskMessage(uuid.uuid4().hex, "sleep", (3.0,), {"tag": "long"}, None, time.time(), None)
    h.backend.record_queued([m], h.settings.tries)
    source.append(m.encode(), m.task_id.encode(), 0)
    wait_for(lambda: h.status(m.task_id) == "processing", 10, 0.01, "the claim")
    wait_for(source.hanging.is_set, 10, 0.01, "the loop to hang in its poll")
    lapsed = []
    try:
        until = time.monotonic() + 2.5  # the loop hangs in its poll all along; the lease is 2 s
        while time.monotonic() < until:  # watching the lease for longer than it lasts
            sec, usec = h.r.time()
            if float(h.r.hget(h.backend.keys.task(m.task_id), "lease") or 0) < sec + usec / 1e6:
                lapsed.append(sec)
            time.sleep(0.05)
    finally:
        source.release.set()
    assert not lapsed, "the lease lapsed while the worker ran the task"
    h.wait_done([m.task_id])
    assert h.status(m.task_id) == "success" and w.done == 1


def test_a_claim_made_before_a_freeze_is_checked_again_before_it_runs(h: Harness) -> None:
    """A claim older than a third of its lease is confirmed in Redis before its task starts."""
    h.source.assign([0, 1])
    w = h.worker()
    tid = h.submit("add", 1, 1)
    h.wait_done([tid])
    fence = h.r.hget(h.backend.keys.task(tid), "fence")
    assert fence is not None
    assert w.claims.confirm(tid, fence) is False, "a finished task's claim still confirmed"


def test_a_claim_held_over_a_redis_outage_beside_a_second_message_of_its_task_runs_it_once(h: Harness) -> None:
    """Two messages of one task (a republish after a broker restart, an outbox publishing again) and a
    Redis outage that keeps the first one's claim unsent: the step sent when Redis is back must not
    carry a claim of the second one too, or both come back `run` (the claim's "our own claim, sent
    again" answer) and the task runs twice with no run cut off."""
    h.source.assign([0])
    tid = h.submit("sleep", 0.05, tag="once", partition=0)
    first = h.source.log[0][0]
    h.source.append(first.value, first.key, 0)
    w = Worker(h.settings, make_registry(h.ledger), "W1", source=h.source)
    w.connect()
    real_step, refused = w.claims.step, threading.Event()

    def step_redis_down_once(outcomes: Sequence[Any], claims: Sequence[Any]) -> Any:
        if claims and not refused.is_set():
            refused.set()
            raise redis.ConnectionError("Redis went away")
        return real_step(outcomes, claims)

    w.claims.step = step_redis_down_once  # type: ignore[method-assign]
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    h.workers.append((w, t))
    h.wait_done([tid])
    wait_for(lambda: h.source.committed_offsets.get(0) == 2, 10, what="both messages committed")
    assert refused.is_set()
    assert [r[0] for r in h.ledger.runs] == ["once"], "the task ran twice"


def test_two_messages_of_one_task_claimed_in_one_step_give_one_run(h: Harness) -> None:
    """The claim fence itself, whatever the worker sends: a step claiming one task twice (two of its
    messages) runs it once; the second claim is busy."""
    m = TaskMessage(uuid.uuid4().hex, "add", (1, 2), {}, None, time.time(), None)
    h.backend.record_queued([m], h.settings.tries)
    work = TaskWork(m, body_digest(m.task, m.args, m.kwargs))
    pipe = ClaimPipeline(h.r, h.settings, "W1", "W1:1")
    _, verdicts = pipe.step([], [Claim(work, 0, 0), Claim(work, 0, 1)])
    assert [type(v) for v in verdicts] == [Run, Busy], verdicts
    _, again = pipe.step([], [Claim(work, 0, 0)])  # the same step sent again after a lost reply: the same claim
    assert isinstance(again[0], Run) and again[0].fence == verdicts[0].fence  # type: ignore[union-attr]


def test_the_partition_is_paused_when_its_buffer_is_full(h: Harness) -> None:
    h.source.assign([0])
    h.worker(concurrency=1)
    blocker = h.submit("sleep", 1.0, tag="blocker", partition=0)
    for i in range(120):
        h.submit("add", i, 0, partition=0)
    w = h.workers[0][0]
    wait_for(lambda: any(d["paused"] for d in w.tracker.describe()), 5, what="partition 0 paused")
    # Paused: no poll brings more than the buffer has room for.
    assert w.tracker.buffered() <= h.settings.max_buffered
    h.wait_done([blocker])
    wait_for(lambda: h.source.committed_offsets.get(0) == 121, 20, what="backlog drained")


def test_a_full_partition_is_not_fetched_while_the_others_run(h: Harness) -> None:
    """A partition whose buffer is full stops being fetched: its records would be decoded only to be
    dropped and fetched again. Partition 0 stays full (everything behind a held task of one ordering
    key) while partition 1's tasks run; nothing is lost, and partition 0's backlog is fetched about
    once, not read through and dropped while it waits."""
    h.source.assign([0, 1])
    w = h.worker(concurrency=2)
    held = h.submit("gated", tag="held", key="k", partition=0)
    behind = [h.submit("add", i, 0, key="k", partition=0) for i in range(400)]
    wait_for(lambda: any(d["paused"] for d in w.tracker.describe()), 5, what="partition 0 paused")
    others = [h.submit("add", i, 1, partition=1) for i in range(200)]
    h.wait_done(others)
    assert h.status(held) == "processing"
    h.ledger.gate.set()
    h.wait_done([held, *behind])
    # Each record fetched once. Read through and dropped while it waited (and again each time it
    # resumed and filled up), the same run fetched about 1,200.
    assert h.source.delivered == 601, h.source.delivered


def test_a_partition_paused_when_a_rebalance_gives_it_back_is_fetched_again(h: Harness) -> None:
    """The source keeps a partition's pause across a rebalance that gives it back (as kafka-python
    does), while the worker starts it afresh: the worker resumes every partition it is given."""
    h.source.assign([0])
    h.worker(concurrency=1)
    held = h.submit("gated", tag="held", key="k", partition=0)
    behind = [h.submit("add", i, 0, key="k", partition=0) for i in range(60)]  # more than max_buffered
    wait_for(lambda: 0 in h.source.paused, 5, what="partition 0 paused at the source")
    h.source.revoke([0])
    h.source.assign([0])
    h.ledger.gate.set()
    h.wait_done([held, *behind], timeout=30)  # left paused, the tasks behind would never be fetched


def test_worker_commands_pause_resume_and_stop(h: Harness) -> None:
    from yadtq.store.worker_commands import send_command
    h.source.assign([0, 1])
    w = h.worker()
    send_command(h.r, h.backend.keys, "W1", "pause")
    wait_for(lambda: w.paused, 5, what="paused")
    tid = h.submit("add", 2, 2)
    h.rounds_pass(10)  # half a second of loop rounds in which a worker not paused would run it
    assert h.status(tid) == "queued"
    send_command(h.r, h.backend.keys, "W1", "resume")
    h.wait_done([tid])
    send_command(h.r, h.backend.keys, "W1", "stop")
    wait_for(lambda: not h.workers[0][1].is_alive(), 10, what="worker stopped")


# -- pure parts ------------------------------------------------------------------------


def test_a_worker_with_full_buffers_fetches_little_it_would_drop_and_fetch_again(h: Harness) -> None:
    h.source.assign([0])
    h.worker(concurrency=1)
    blocker = h.submit("sleep", 0.5, tag="blocker", partition=0)
    n = 400
    for i in range(n):
        h.submit("add", i, 0, partition=0)
    h.wait_done([blocker])
    wait_for(lambda: h.source.committed_offsets.get(0) == n + 1, 30, what="backlog drained")
    # Each poll brings no more than the buffers have room for: a full partition is handed about a
    # record per poll while it waits, not the backlog again each time (seeks back fetch it again).
    assert h.source.delivered < 2 * (n + 1), h.source.delivered


def test_a_claim_after_a_cut_off_run_returns_what_it_stored(h: Harness) -> None:
    """The run verdict carries the record's fence, attempt count and cut-off runs as the claim left
    them, for a record the client wrote and for one the claim itself created."""
    m = TaskMessage(uuid.uuid4().hex, "add", (1, 2), {"x": 1}, 4, time.time(), 30.0)
    h.backend.record_queued([m], h.settings.tries)
    bare = TaskMessage(uuid.uuid4().hex, "add", (3, 4), {}, None, None, None)  # no record yet
    short = Settings(**{**h.settings.__dict__, "lease": 0.05})
    first = ClaimPipeline(h.r, short, "W1", "W1:1")
    for msg in (m, bare):
        work = TaskWork(msg, body_digest(msg.task, msg.args, msg.kwargs))
        _, [one] = first.step([], [Claim(work, 0, 0)])
        assert isinstance(one, Run) and (one.fence, one.attempt, one.lost_runs) == ("1", 1, 0), one
        time.sleep(0.1)  # its lease lapses: the worker died mid-run
        _, [two] = ClaimPipeline(h.r, h.settings, "W2", "W2:1").step([], [Claim(work, 0, 0)])
        assert isinstance(two, Run), two
        assert (two.fence, two.attempt, two.lost_runs, two.failures) == ("2", 2, 1, 0), two
        assert (two.task, two.args, two.kwargs, two.tries) == (msg.task, list(msg.args), msg.kwargs,
                                                              msg.tries or h.settings.tries)
        assert two.time_limit == msg.time_limit
        stored = h.r.hgetall(f"{h.settings.prefix}task:{msg.task_id}")
        assert (stored["fence"], stored["attempts"], stored["lost_runs"]) == ("2", "2", "1"), stored

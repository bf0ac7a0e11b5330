"""The engine's invariants in-process: an in-memory task source, a real Redis, a real `Worker`.

Each test runs in well under a second or two; the process tests (tests/system: test_guarantees,
test_chaos) keep what only processes show (kill -9, SIGSTOP).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from conftest import wait_for
from worker_harness import Harness, h  # noqa: F401  (the fixture)

from yadtq.store.claims import Claim, Outcome, Run, Verdict
from yadtq.worker import Worker
from yadtq.worker.context import WorkerContext
from yadtq.worker.jobs import Finished
from yadtq.worker.middleware import Middleware


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


def _in_flight_per_step(w: Worker) -> list[int]:
    """Wraps the worker's steps: after each, how many claims it holds (claimed, outcome not stored)."""
    seen: list[int] = []
    real_step = w.claims.step

    def step(outcomes: Sequence[Outcome], claims: Sequence[Claim]) -> tuple[list[bool], list[Verdict]]:
        stored, verdicts = real_step(outcomes, claims)
        seen.append(len(w.dispatch.running) - len(outcomes) + sum(isinstance(v, Run) for v in verdicts))
        return stored, verdicts

    w.claims.step = step  # type: ignore[method-assign]
    return seen


def test_short_tasks_are_claimed_ahead_of_the_free_slots_and_long_ones_never(h: Harness) -> None:
    short = [h.submit("add", i, 1, partition=i % 2) for i in range(400)]  # a backlog, before the worker reads
    w = h.worker(claim_ahead=4)
    seen = _in_flight_per_step(w)
    h.source.assign([0, 1])
    h.wait_done(short)
    assert max(seen) > h.settings.concurrency, f"never claimed ahead of its {h.settings.concurrency} slots: {seen}"
    assert max(seen) <= h.settings.concurrency + 4, seen
    seen.clear()
    # A run of 0.05 s is not short: once the average says so, claims stay within the slots.
    slow = [h.submit("sleep", 0.05, tag=f"s{i}", partition=i % 2) for i in range(60)]
    h.wait_done(slow)
    late = seen[len(seen) // 2:]
    assert late and max(late) <= h.settings.concurrency, seen
    assert all(h.status(t) == "success" for t in short + slow)


def test_claims_ahead_never_run_more_tasks_at_once_than_the_slots_with_async_tasks_among_them(h: Harness) -> None:
    """An `async def` task takes no thread: were it claimed ahead, or the others beside it, the event loop
    and the threads together would run more than `concurrency` tasks at once."""
    ids = [h.submit("sleep", 0.0005, tag=f"w{i}", partition=i % 2) for i in range(64)]  # short: claims go ahead
    for i in range(160):
        ids.append(h.submit("anap", 0.002, tag=f"a{i}", partition=i % 2) if i % 3 == 0
                   else h.submit("sleep", 0.001, tag=f"s{i}", partition=i % 2))
    w = h.worker(claim_ahead=4)
    seen = _in_flight_per_step(w)
    h.source.assign([0, 1])
    h.wait_done(ids)
    assert max(seen) > h.settings.concurrency, f"never claimed ahead: {seen}"
    starts = sorted(s for _, s, _ in h.ledger.runs)
    overlaps = max(sum(1 for _, s, e in h.ledger.runs if s <= t < e) for t in starts)
    assert overlaps <= h.settings.concurrency, overlaps
    assert all(h.status(t) == "success" for t in ids)

"""The engine's invariants in-process, around partitions and claims: placement and the broker's epoch,
claims across a frozen loop or a Redis outage, flow control of full buffers, commands to a worker.
An in-memory task source, a real Redis, a real `Worker` (tests/engine/worker_harness.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from conftest import wait_for
from worker_harness import Harness, h, make_registry  # noqa: F401  (the fixture)

from yadtq.config import Settings
from yadtq.store.claims import Busy, Claim, ClaimPipeline, Run
from yadtq.task.messages import TaskMessage, body_digest
from yadtq.worker import MemorySource, Worker
from yadtq.worker.records import Record, TaskWork


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

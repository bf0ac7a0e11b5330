"""Delayed and expiring tasks in-process: a real Redis, real `Worker`s, an in-memory task source.

Never early (also when a message comes before its eta), expired at the claim (a late message, a
retry past the expiry), several schedulers taking each due task once, a taker that dies retaken.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis
from conftest import wait_for
from worker_harness import Harness, h  # noqa: F401  (fixtures)

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import MessageError
from yadtq.store.claims import Claim, ClaimPipeline, Run
from yadtq.store.delayed import DelayedTasks
from yadtq.task.messages import TaskMessage
from yadtq.task.timing import Timing
from yadtq.worker.records import TaskWork


def submit(h: Harness, task: str, *args: Any, timing: Timing, publish: bool = False) -> tuple[str, str]:
    """Records a task as the client does; publishes its message only if asked (an early message)."""
    m = TaskMessage(uuid.uuid4().hex, task, args, {}, None, time.time(), None, None, timing)
    verdict = h.backend.record_queued([m], h.settings.tries)[0]
    if publish or verdict == "new":
        h.source.append(m.encode(), m.task_id.encode())
    return m.task_id, verdict


def redis_now(r: redis.Redis) -> float:
    sec, usec = r.time()
    return sec + usec / 1e6


def test_a_delayed_task_never_runs_early_even_when_its_message_comes_first(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker(schedule_lead=0.0)  # published when due: the early message meets a `scheduled` record
    # Due in 2 s: 4 rounds of a worker take far less, even on a loaded machine (0.8 s was seen to run out).
    early, verdict = submit(h, "sleep", 0.0, "early", timing=Timing(countdown=2.0), publish=True)
    plain, _ = submit(h, "sleep", 0.0, "plain", timing=Timing(countdown=2.0))
    assert verdict == "scheduled" and h.status(early) == "scheduled"
    h.rounds_pass(4)  # the early message was claimed and set aside meanwhile
    assert h.status(early) == "scheduled" and not h.ledger.runs
    h.wait_done([early, plain], timeout=10)
    for tid in (early, plain):
        rec = h.backend.get(tid)
        assert rec.status == "success" and rec.started is not None and rec.eta is not None
        assert rec.started >= rec.eta, f"started {rec.eta - rec.started:.3f}s early"
    assert sorted(r[0] for r in h.ledger.runs) == ["early", "plain"], "a delayed task ran twice"
    wait_for(lambda: h.r.zcard(h.backend.keys.scheduled) == 0, 5, what="scheduled set emptied")


def test_a_task_published_ahead_of_its_eta_is_held_by_the_worker_until_then(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker()  # schedule_lead 2 s: published at once, claimed early, held
    tid, _ = submit(h, "sleep", 0.0, "ahead", timing=Timing(countdown=1.0))
    wait_for(lambda: h.status(tid) == "queued", 5, what="published ahead of its eta")
    assert h.backend.get(tid).eta > redis_now(h.r) and not h.ledger.runs  # type: ignore[operator]
    h.wait_done([tid])
    rec = h.backend.get(tid)
    assert rec.started is not None and rec.eta is not None and rec.started >= rec.eta
    assert [r[0] for r in h.ledger.runs] == ["ahead"]


def test_a_message_with_a_countdown_from_any_client_is_held_until_due(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker()
    m = TaskMessage(uuid.uuid4().hex, "sleep", (0.0, "foreign"), {}, timing=Timing(countdown=0.6))
    h.source.append(m.encode(), m.task_id.encode())  # no record: the claim makes it, scheduled
    wait_for(lambda: h.r.exists(h.backend.keys.task(m.task_id)), 5, what="record made by the worker")
    assert h.status(m.task_id) == "scheduled"
    h.wait_done([m.task_id])
    rec = h.backend.get(m.task_id)
    assert rec.started is not None and rec.eta is not None and rec.started >= rec.eta


def test_a_task_not_started_before_it_expires_ends_expired_and_never_runs(h: Harness) -> None:
    late, _ = submit(h, "sleep", 0.0, "late", timing=Timing(expires=0.2))  # no worker has its partition yet
    delayed, _ = submit(h, "sleep", 0.0, "delayed", timing=Timing(countdown=0.5, expires=0.3))
    time.sleep(0.6)
    h.source.assign([0, 1])
    h.worker()
    wait_for(lambda: h.status(late) == "expired" and h.status(delayed) == "expired", 10, what="both expired")
    assert not h.ledger.runs
    assert "expired" in (h.backend.get(late).error or "")
    assert h.r.zcard(h.backend.keys.scheduled) == 0


def test_a_retry_due_after_the_expiry_ends_expired(h: Harness) -> None:
    h.source.assign([0, 1])
    h.worker()
    tid, _ = submit(h, "flaky", "X", timing=Timing(expires=0.2))  # its retry is parked 0.3 s
    wait_for(lambda: h.status(tid) == "expired", 10, what="the retry expired")
    assert [r[0] for r in h.ledger.runs] == ["X"], "it ran again after its expiry"


def test_a_scheduled_task_can_be_cancelled(h: Harness) -> None:
    tid, _ = submit(h, "sleep", 0.0, "never", timing=Timing(countdown=0.3))
    assert h.backend.cancel(tid, "test").status == "cancelled"
    assert h.r.zscore(h.backend.keys.scheduled, tid) is None
    h.source.assign([0, 1])
    h.worker()
    h.rounds_pass(10)
    assert h.status(tid) == "cancelled" and not h.ledger.runs


def test_several_schedulers_take_each_due_task_once_and_a_dead_takers_tasks_again(h: Harness) -> None:
    eta = redis_now(h.r) + 1.0  # all due in the same instant
    msgs = [TaskMessage(uuid.uuid4().hex, "add", (i, 1), {}, timing=Timing(eta=eta)) for i in range(1000)]
    assert set(h.backend.record_queued(msgs, 3)) == {"scheduled"}
    ids = [m.task_id for m in msgs]
    # A taker killed between take and publish: takes a few, never confirms.
    s = h.settings.replace(schedule_lead=0.0)  # taken when due, so the dead taker's hold counts from then
    dead = DelayedTasks(h.r, s)
    wait_for(lambda: h.r.zcount(h.backend.keys.scheduled, "-inf", redis_now(h.r)) == len(ids), 5, what="all due")
    lost = dead.take(limit=50, hold=0.5)
    assert len(lost) == 50
    taken: list[str] = []
    lock = threading.Lock()

    def scheduler() -> None:
        mine = DelayedTasks(redis.Redis.from_url(h.settings.redis_url, decode_responses=True), s)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            got = mine.take(limit=100)
            if got:
                idle_since = time.monotonic()
                mine.confirm(got)
                with lock:
                    taken.extend(d.message.task_id for d in got)
            else:
                time.sleep(0.01)

    threads = [threading.Thread(target=scheduler) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(taken) == len(set(taken)) == len(ids), "a due task was taken twice, or not at all"
    assert set(taken) == set(ids), "the dead taker's tasks were not taken again"
    assert h.r.zcard(h.backend.keys.scheduled) == 0


def test_a_waiting_task_takes_under_a_kilobyte_of_redis(h: Harness) -> None:
    before = int(h.r.info("memory")["used_memory"])
    msgs = [TaskMessage(uuid.uuid4().hex, "add", (i, 1), {}, 3, time.time(), None, None,
                        Timing(countdown=3600, expires=7200)) for i in range(2000)]
    for start in range(0, len(msgs), 500):
        h.backend.record_queued(msgs[start:start + 500], 3)
    per_task = (int(h.r.info("memory")["used_memory"]) - before) / len(msgs)
    assert h.r.zcard(h.backend.keys.scheduled) == 2000
    print(f"{per_task:.0f} bytes per waiting task")
    assert per_task < 1024, f"{per_task:.0f} bytes of Redis per waiting task"


def test_submit_many_specs_carry_the_same_options(redis_url: str) -> None:  # noqa: F811
    q = YADTQ(Settings(redis_url=redis_url), create_topic=False)  # no broker is needed
    as_tuple = q._spec(("add", [1, 2], {}, {"countdown": 5, "expires": 60}), unchecked=True)
    as_dict = q._spec({"task": "add", "args": [1, 2], "eta": 1_800_000_000.0, "expires": 60}, unchecked=True)
    assert as_tuple.timing == Timing(countdown=5.0, expires=60.0)
    assert as_dict.timing == Timing(eta=1_800_000_000.0, expires=60.0)
    with pytest.raises(MessageError, match="unknown task options"):
        q._spec(("add", [1, 2], {}, {"countdwn": 5}), unchecked=True)
    with pytest.raises(MessageError, match="countdown"):
        q.message("add", [1, 2], countdown=-5, unchecked=True)


def test_a_requeued_expired_task_runs_without_its_expiry(h: Harness) -> None:
    tid, _ = submit(h, "sleep", 0.0, "again", timing=Timing(countdown=0.2, expires=0.1))
    h.source.assign([0, 1])
    h.worker()
    wait_for(lambda: h.status(tid) == "expired", 10, what="expired")
    message = h.backend.reset_to_queued(tid)
    h.source.append(message.encode(), tid.encode())
    h.wait_done([tid])
    assert h.status(tid) == "success" and [r[0] for r in h.ledger.runs] == ["again"]


def test_a_cut_off_run_requeued_by_the_monitor_keeps_its_eta_and_a_requeue_runs_a_scheduled_task_now(
        h: Harness) -> None:
    """The eta is the record's: a requeue drops only an eta still ahead (it would hold the run back)."""
    due = redis_now(h.r) - 1.0
    ran, _ = submit(h, "sleep", 0.0, "ran", timing=Timing(eta=due))
    dead = ClaimPipeline(h.r, h.settings.replace(lease=0.2), "dead", "dead:1")
    m = TaskMessage(ran, "sleep", (0.0, "ran"), {}, None, time.time(), None, None, Timing(eta=due))
    _, [verdict] = dead.step([], [Claim(TaskWork(m, m.digest), 0, 0)])
    assert isinstance(verdict, Run)  # claimed by a worker that then dies: never renewed, no outcome
    wait_for(lambda: ran in h.backend.lapsed(0.0), 5, what="the dead claim's lease lapsed")
    h.backend.reset_to_queued(ran, fresh=False)  # as the monitor does
    rec = h.backend.get(ran)
    assert rec.status == "queued" and h.r.hget(h.backend.keys.task(ran), "lost_runs") == "1"
    assert rec.eta == pytest.approx(due, abs=1e-3), "a requeue lost the eta of a task that ran after it"
    ahead, _ = submit(h, "sleep", 0.0, "now", timing=Timing(countdown=60.0))
    h.backend.reset_to_queued(ahead)  # a user's requeue of a scheduled task: it runs now
    assert h.backend.get(ahead).eta is None


def test_a_cut_off_run_requeued_by_the_monitor_after_its_expiry_ends_expired_and_never_runs_again(
        h: Harness) -> None:
    """Its run started before the expiry and was cut off; the monitor's requeue (the message is gone)
    must not give it a second run after the expiry, as a redelivered message would not."""
    tid, _ = submit(h, "sleep", 0.0, "cut", timing=Timing(expires=0.5))
    m = TaskMessage(tid, "sleep", (0.0, "cut"), {}, None, time.time(), None, None, Timing(expires=0.5))
    dead = ClaimPipeline(h.r, h.settings.replace(lease=0.2), "dead", "dead:1")
    _, [verdict] = dead.step([], [Claim(TaskWork(m, m.digest), 0, 0)])
    assert isinstance(verdict, Run)  # claimed by a worker that then dies: never renewed, no outcome
    expires = float(h.r.hget(h.backend.keys.task(tid), "expires") or 0)
    wait_for(lambda: tid in h.backend.lapsed(0.0) and redis_now(h.r) > expires, 5, what="lapsed and expired")
    message = h.backend.reset_to_queued(tid, fresh=False)  # as the monitor does
    assert float(h.r.hget(h.backend.keys.task(tid), "expires") or 0) == pytest.approx(expires)
    h.source.append(message.encode(), tid.encode())
    h.source.assign([0, 1])
    h.worker()
    wait_for(lambda: h.status(tid) == "expired", 10, what="expired")
    h.rounds_pass(4)
    assert h.status(tid) == "expired" and not h.ledger.runs, "a cut-off run ran again after its expiry"

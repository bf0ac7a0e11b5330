"""The monitor reading heartbeats sent before it started (under `make run` it may connect after the workers):
a new worker's fresh beat counts, so the registry says it is joining; older history does not. Its samples.
Its requeue of lapsed claims, which spares a worker that is alive."""

from __future__ import annotations

import io
import threading
import time
import uuid
from pathlib import Path

from conftest import wait_for
from test_keys_and_retention import Recording

from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.monitor.monitor import Beat, Monitor
from yadtq.monitor.recovery import Recovery
from yadtq.store.backend import Backend
from yadtq.store.claims import Claim, ClaimPipeline, Outcome, Run
from yadtq.store.connection import connect_redis
from yadtq.store.live_state import ALIVE, DEAD, LiveState
from yadtq.task.messages import Heartbeat, TaskMessage
from yadtq.task.status import STATUSES, Status
from yadtq.worker.records import TaskWork


def test_a_fresh_beat_from_before_the_start_counts_only_for_a_worker_the_registry_never_saw(
        redis_url: str, tmp_path: Path) -> None:
    s = Settings(redis_url=redis_url, prefix=f"mh{uuid.uuid4().hex[:8]}:", log_dir=str(tmp_path))
    monitor = Monitor(s, events=EventLog(None, "monitor"))
    client = connect_redis(s)
    monitor.live = live = LiveState(client, s)
    now = time.time()

    def beat(worker: str, incarnation: str, sent: float) -> Beat:
        return Beat(Heartbeat(worker, "h", 7, incarnation, "joining", None, 0, 0, ts=sent), now, False)

    live.put_worker("W2", {"name": "W2", "status": ALIVE, "incarnation": "W2:old", "state": "idle", "partitions": [0]})
    monitor.record([beat("W1", "W1:new", now - 1), beat("W2", "W2:old", now - 1),
                    beat("W3", "W3:gone", now - 3 * s.heartbeat_interval)])
    workers = live.workers()
    assert workers["W1"]["status"] == ALIVE and workers["W1"]["state"] == "joining"
    assert workers["W2"]["state"] == "idle"  # known: the registry knows better than its history
    assert "W3" not in workers  # too old to say anything of now
    client.close()


def test_a_sample_reads_counts_and_completions_at_one_moment(redis_url: str, tmp_path: Path) -> None:
    """Steps complete tasks while the monitor samples: every sample's per-worker completions add up to its
    finished counts, and its counts to the tasks submitted (read apart, they disagreed by a few tasks)."""
    s = Settings(redis_url=redis_url, prefix=f"ms{uuid.uuid4().hex[:8]}:", log_dir=str(tmp_path), series_points=5000)
    monitor = Monitor(s, events=EventLog(None, "monitor"))
    client = connect_redis(s)
    monitor.live, monitor.backend = LiveState(client, s), Backend(client, s)
    tasks = [TaskMessage(f"t{i}", "add", (i, 1), {}, 1, None, None) for i in range(400)]
    monitor.backend.record_queued(tasks, 1)
    done = threading.Event()

    def run_all() -> None:  # a worker's steps, one task at a time: claim, then store its outcome
        with connect_redis(s) as own:
            pipe = ClaimPipeline(own, s, "W1", "W1:1")
            for i, m in enumerate(tasks):
                _, [run] = pipe.step([], [Claim(TaskWork(m, m.digest), 0, i)])
                assert isinstance(run, Run)
                status = Status.SUCCESS if i % 3 else Status.FAILED
                pipe.step([Outcome(m.task_id, run.fence, status)], [])
        done.set()

    worker = threading.Thread(target=run_all)
    worker.start()
    while not done.is_set():
        monitor.sample(time.time())
    worker.join()
    monitor.sample(time.time())
    samples = monitor.live.series(5000)
    assert len(samples) > 20
    for x in samples:
        finished = sum(x["done_by"].values()) + sum(x["failed_by"].values())
        assert finished == x[Status.SUCCESS] + x[Status.FAILED], x
        assert sum(x[st] for st in STATUSES) == len(tasks), x
    assert samples[-1]["done_by"] == {"W1": 266} and samples[-1]["failed_by"] == {"W1": 134}
    client.close()


def test_a_lapsed_claim_is_requeued_only_once_the_worker_that_made_it_is_not_alive(
        redis_url: str, tmp_path: Path) -> None:
    """Redis away for longer than the lease (a Sentinel election that split its vote took 21 s) lapses
    the leases of a live worker's running tasks: it could not renew them. The monitor must not requeue
    those (they would run a second time; the worker stores their outcomes when Redis returns). The
    claim of a dead incarnation, whose name is alive again under a new one (the farm respawned it), is
    requeued at once; so is the live worker's once the monitor declared it dead."""
    s = Settings(redis_url=redis_url, prefix=f"mr{uuid.uuid4().hex[:8]}:", log_dir=str(tmp_path),
                 lease=0.2, requeue_stale_after=0.05)
    q = Recording(s)
    running, orphan = (TaskMessage(f"{n}-{uuid.uuid4().hex[:6]}", "add", (1, 2), {}, 1, None, None)
                       for n in ("running", "orphan"))
    q.backend.record_queued([running, orphan], 1)
    runs = {}
    for m, worker, incarnation in ((running, "W1", "W1:now"), (orphan, "W2", "W2:killed")):
        pipe = ClaimPipeline(q.redis, s, worker, incarnation)
        _, [run] = pipe.step([], [Claim(TaskWork(m, m.digest), 0, len(runs))])
        assert isinstance(run, Run)
        runs[m.task_id] = (pipe, run)
    q.live.put_worker("W1", {"name": "W1", "status": ALIVE, "incarnation": "W1:now"})
    q.live.put_worker("W2", {"name": "W2", "status": ALIVE, "incarnation": "W2:respawned"})
    wait_for(lambda: set(q.backend.lapsed(0.1)) == {running.task_id, orphan.task_id}, 5,
             what="both leases lapsed for longer than the grace")
    recovery = Recovery(q, EventLog(None, "monitor", stream=io.StringIO()))
    recovery.tick(time.time())
    assert [m.task_id for m in q.sent] == [orphan.task_id], "which lapsed claims were published again"
    assert q.status(orphan.task_id).status == Status.QUEUED
    assert q.status(running.task_id).status == Status.PROCESSING
    pipe, run = runs[running.task_id]
    assert pipe.step([Outcome(running.task_id, run.fence, Status.SUCCESS, "3")], []) == ([True], [])
    assert q.status(running.task_id).result == 3  # the live worker's run stands, once, as it finished

    # A live worker's claim that still lapses once the monitor declared it dead is requeued.
    q.sent.clear()
    m = TaskMessage(f"late-{uuid.uuid4().hex[:6]}", "add", (2, 2), {}, 1, None, None)
    q.backend.record_queued([m], 1)
    _, [run] = pipe.step([], [Claim(TaskWork(m, m.digest), 0, 9)])
    assert isinstance(run, Run)
    wait_for(lambda: m.task_id in q.backend.lapsed(0.1), 5, what="its lease lapsed")
    recovery.tick(time.time() + 10)
    assert not q.sent and q.status(m.task_id).status == Status.PROCESSING, "requeued while W1 is alive"
    q.live.put_worker("W1", {"name": "W1", "status": DEAD, "incarnation": "W1:now"})
    recovery.tick(time.time() + 20)
    assert [x.task_id for x in q.sent] == [m.task_id] and q.status(m.task_id).status == Status.QUEUED
    q.close()

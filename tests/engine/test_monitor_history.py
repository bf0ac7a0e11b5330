"""The monitor reading heartbeats sent before it started (under `make run` it may connect after the workers):
a new worker's fresh beat counts, so the registry says it is joining; older history does not. Its samples."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.monitor.monitor import Beat, Monitor
from yadtq.store.backend import Backend
from yadtq.store.claims import Claim, ClaimPipeline, Outcome, Run
from yadtq.store.connection import connect_redis
from yadtq.store.live_state import ALIVE, LiveState
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

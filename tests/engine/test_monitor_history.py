"""The monitor reading heartbeats sent before it started (under `make run` it may connect after the workers):
a new worker's fresh beat counts, so the registry says it is joining; older history does not."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.monitor.monitor import Beat, Monitor
from yadtq.store.connection import connect_redis
from yadtq.store.live_state import ALIVE, LiveState
from yadtq.task.messages import Heartbeat


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

"""`yadtq export` of a running system's record set (a real Redis): nested values (a heartbeat's
partition_state with an empty `waiting`, its running ids, a sample's nested field) reach both
formats as JSON text and read back to what was written."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from yadtq.config import Settings
from yadtq.store.backend import Backend
from yadtq.store.connection import connect_redis
from yadtq.store.export import export
from yadtq.store.live_state import LiveState
from yadtq.task.messages import Heartbeat, TaskMessage

STATES = ({"partition": 0, "committed": 3, "buffered": 0, "running": 0, "paused": False, "waiting": {}},
          {"partition": 1, "committed": 7, "buffered": 2, "running": 1, "paused": True, "waiting": {}})


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_nested_values_as_json_text_and_reads_back(redis_url: str, tmp_path: Path, fmt: str) -> None:
    settings = Settings(redis_url=redis_url, prefix=f"x{uuid.uuid4().hex[:8]}:")
    client = connect_redis(settings)
    backend, live = Backend(client, settings), LiveState(client, settings)
    backend.record_queued([TaskMessage("t1", "add", (1, [2, {"k": []}]), {"opt": {}}, 3, None, None)], 3)
    live.record_heartbeat(Heartbeat("W1", "h", 42, "i-1", "busy", "t1", 5, 1, (0, 1), 1.0, 2, ("t1",), STATES))
    live.record_heartbeat(Heartbeat("W2", "h", 43, "i-2", "idle", None, 0, 0, (), 2.0))  # no partition_state
    live.add_sample({"ts": 1.0, "queued": 1, "done_by": {"W1": 5}, "failed_by": {}, "by_queue": {"default": []}})
    live.add_dead_letter({"ts": 1.0, "task_id": "t9", "error": "bad", "raw": "{}", "partition": 0, "offset": 1})

    stats = export(backend, live, tmp_path, fmt=fmt)
    client.close()

    def read(name: str) -> pd.DataFrame:
        path = tmp_path / f"{name}.{fmt}"
        return pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)

    assert stats.files["heartbeats"] == 2 and stats.files["dead_letters"] == 1
    beats = read("heartbeats").set_index("worker")
    assert [json.loads(x) for x in beats.loc["W1", ["partition_state", "running", "partitions"]]] == \
        [list(STATES), ["t1"], [0, 1]]
    assert json.loads(beats.loc["W2", "partition_state"]) == []
    assert json.loads(read("series").loc[0, "by_queue"]) == {"default": []}
    [task] = read("tasks").to_dict("records")
    assert (json.loads(task["args"]), json.loads(task["kwargs"])) == ([1, [2, {"k": []}]], {"opt": {}})

"""The worker engine, in parts (see docs/architecture.md, "The worker engine"):

* `records`  — a polled record, triaged once (pure);
* `tracker`  — per-partition positions, gaps, key order, pause/resume (pure);
* `claims`   — the claim pipeline: typed Lua steps in Redis;
* `executor` — slots: threads and an event loop, time limits;
* `policies` — retries, events, dead letters, as middleware;
* `source`   — Kafka consumer group, or memory for unit tests;
* `loop`     — the `Worker` that orchestrates them.
"""

from yadtq.worker.loop import EXIT_HARD_TIME_LIMIT, Worker
from yadtq.worker.source import KafkaSource, MemorySource, TaskSource

__all__ = ["EXIT_HARD_TIME_LIMIT", "KafkaSource", "MemorySource", "TaskSource", "Worker"]

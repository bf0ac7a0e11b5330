"""The worker engine, in parts (see docs/architecture.md, "The worker engine"):

* `records`  — a polled record, triaged once (pure);
* `tracker`  — per-partition positions, gaps, key order, pause/resume (pure);
* `claims`   — the claim pipeline: typed Lua steps in Redis;
* `executor` — slots: threads and an event loop, time limits;
* `source`   — Kafka consumer group, or memory for unit tests;
* `intake`   — polling, rebalances, buffering, pause/resume;
* `dispatch` — the store-and-claim step, verdicts, suspect isolation;
* `placement` — where assigned partitions start; broker-epoch trust;
* `housekeeping` — timed chores, commands; `outages` — Redis outage backoff;
* `middleware` + `context` — the hooks, and what a policy may see and do (`WorkerContext`);
* `policies` — retries, events, dead letters, time limits, parked retries; `crash` — crash injection;
* `loop`     — the `Worker` that orchestrates them.
"""

from yadtq.worker.loop import Worker
from yadtq.worker.memory_source import MemorySource
from yadtq.worker.policies import EXIT_HARD_TIME_LIMIT
from yadtq.worker.source import KafkaSource, TaskSource

__all__ = ["EXIT_HARD_TIME_LIMIT", "KafkaSource", "MemorySource", "TaskSource", "Worker"]

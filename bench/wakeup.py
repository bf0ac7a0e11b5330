"""`result()` wake-up latency: from the outcome stored (the step's Redis time) to `result()` returning.

A waiter thread is in `YADTQ.result(id)`; after a random pause (0.05..0.5 s, so the old
polling is caught at every point of its backoff) the worker's own step (`ClaimPipeline.step`,
step.lua) stores the task's outcome. Measured twice on a private Redis: as `result()` is
now (woken by the outcome's announcement; its slow poll set to 10 s so that only the push
can wake it) and with the polling loop it had before (0.02 s growing by 1.5x up to 0.5 s).
Redis and this process share one clock, so the record's `finished` is comparable to
`time.time()`. With `appendfsync always` Redis sends the announcement (like the worker's own
reply) only once the outcome is on disk, so that fsync is in these figures; `*_after_reply`
counts from the worker's step returning instead: the part that is the client's own. The
1-minute load average is printed with them: on a loaded machine both grow. Asserts nothing.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import percentile, private_redis
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.store.backend import Backend, TaskRecord
from yadtq.store.claims import Claim, ClaimPipeline, Outcome, Run
from yadtq.task.messages import TaskMessage
from yadtq.worker.records import TaskWork

Wait = Callable[[str], TaskRecord]


def polled_wait(backend: Backend, task_id: str, timeout: float = 30.0) -> TaskRecord:
    """`YADTQ.wait` as it was: read, sleep, read again (0.02 s, growing by 1.5x up to 0.5 s)."""
    deadline, delay = time.monotonic() + timeout, 0.02
    while True:
        rec = backend.get(task_id)
        if rec.done or time.monotonic() >= deadline:
            return rec
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def one(q: YADTQ, claims: ClaimPipeline, wait: Wait, i: int) -> tuple[float, float]:
    """Milliseconds from the outcome stored, and from the worker's step returning, to `wait`
    returning, for one task."""
    m = TaskMessage(uuid.uuid4().hex, "add", (i, 1), {}, 1, time.time(), None, None)
    q.backend.record_queued([m], 1)
    _, verdicts = claims.step([], [Claim(TaskWork(m, m.digest), 0, i)])
    run = verdicts[0]
    assert isinstance(run, Run), run
    returned: dict[str, float] = {}
    waiter = threading.Thread(target=lambda: (wait(m.task_id), returned.setdefault("at", time.time())))
    waiter.start()
    time.sleep(random.uniform(0.05, 0.5))
    claims.step([Outcome(m.task_id, run.fence, "success", str(i + 1))], [])
    replied = time.time()
    waiter.join(timeout=30)
    finished = q.backend.get(m.task_id).finished
    assert finished is not None and "at" in returned
    return (returned["at"] - finished) * 1000, (returned["at"] - replied) * 1000


def main(n: int) -> dict[str, Any]:
    with private_redis() as url:
        s = Settings(redis_url=url, prefix=f"wake{uuid.uuid4().hex[:6]}:", result_poll=10.0)
        with YADTQ(s, create_topic=False) as q, YADTQ(s, create_topic=False) as worker_side:
            claims = ClaimPipeline(worker_side.redis, s, "W1", "W1:bench")
            pushed = [one(q, claims, lambda tid: q.wait(tid, 30), i) for i in range(n)]
            polled = [one(q, claims, lambda tid: polled_wait(q.backend, tid), i) for i in range(n)]
    out: dict[str, Any] = {"n": n, "load_1min": round(os.getloadavg()[0], 1)}
    for name, pairs in (("pushed", pushed), ("polled", polled)):
        for p in (50, 99):
            out[f"{name}_p{p}_ms"] = round(percentile([a for a, _ in pairs], p), 2)
            out[f"{name}_after_reply_p{p}_ms"] = round(percentile([b for _, b in pairs], p), 2)
    return out


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))

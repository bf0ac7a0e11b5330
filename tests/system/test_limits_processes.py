"""Rate limits on worker processes, on each broker: a decorator's limit is registered by the workers
that import it, set over at run time from the CLI, shown and reset through the HTTP API, and held
across two workers in every 1-second window."""

from __future__ import annotations

from typing import Any

from conftest import Procs, run_cli, wait_for

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.store.keys import Keys


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times))


def test_a_rate_set_from_the_cli_holds_across_two_workers(settings: Settings, procs: Procs, q: YADTQ,
                                                           api: Any) -> None:
    for name in ("W1", "W2"):
        procs.worker(name, "--tasks", "limit_tasks", "--concurrency", "4")
    procs.wait_assigned(["W1", "W2"])
    row = wait_for(lambda: next((r for r in api.get("/limits").json() if r["task"] == "paced"), None), 20,
                   what="the decorator's limit registered by the workers")
    assert (row["rate_limit"], row["rate_limit_from"]) == ("10/s", "code")

    done = run_cli(settings, "limits", "set", "paced", "--rate", "15/s")
    assert done.returncode == 0, done.stderr
    assert "15/s (set)" in done.stdout

    ids = [q.submit("paced", [i]) for i in range(45)]
    wait_for(lambda: all(q.status(i).status == "success" for i in ids), 60, 0.2, "45 paced tasks done")
    starts = [q.status(i).started for i in ids]
    assert all(s is not None for s in starts)
    times = [float(s) for s in starts if s is not None]
    assert most_in_one_second(times) <= 15 + 2, "over the rate by more than one start per worker"
    assert max(times) - min(times) >= 44 / 15 - 0.1, "45 starts at 15/s went faster than the rate"

    reset = api.delete("/limits/paced").json()
    assert (reset["rate_limit"], reset["rate_limit_from"]) == ("10/s", "code")
    assert api.put("/limits/paced", json={"rate_limit": "fast"}).status_code == 422


def test_a_rate_limited_backlog_larger_than_the_buffers_waits_in_redis_and_runs_once_across_a_kill_9(
        settings: Settings, procs: Procs, q: YADTQ) -> None:
    small = settings.replace(max_buffered=20)  # 30 limited tasks per partition: more than a buffer
    for name in ("W1", "W2"):
        procs.worker(name, "--tasks", "limit_tasks", "--concurrency", "4", settings=small)
    procs.wait_assigned(["W1", "W2"])
    q.set_limit("paced", rate_limit="20/s")
    paced = q.submit_many([("paced", [i]) for i in range(30 * settings.partitions)])
    free = q.submit_many([("add", [i, 1]) for i in range(40)])
    wait_for(lambda: all(r.status == "success" for r in q.backend.get_many(free)), 15, 0.1,
             "the unlimited tasks behind the limited backlog done")
    assert sum(1 for r in q.backend.get_many(paced) if not r.done) >= len(paced) // 2, \
        "the unlimited tasks waited for most of the limited backlog to run (or it ran faster than 20/s)"

    procs.kill9("W1")  # with booked tasks parked in Redis and held in its buffer, offsets not committed
    wait_for(lambda: all(r.status == "success" for r in q.backend.get_many(paced)), 90, 0.2, "the backlog done")
    keys = Keys(settings.prefix)
    for r in q.backend.get_many(paced):
        lost = int(q.backend.r.hget(keys.task(r.task_id), "lost_runs") or 0)
        assert r.attempts - lost == 1, f"{r.task_id} ran {r.attempts} times, {lost} of them cut off"
    times = [float(r.started) for r in q.backend.get_many(paced) if r.started is not None]
    assert most_in_one_second(times) <= 20 + 2, "over the rate by more than one start per worker"

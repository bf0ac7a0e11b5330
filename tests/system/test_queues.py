"""Named queues on real processes and both brokers: routing by declaration and by override, each
queue on its own topic, strict priority with both queues backlogged, and depth per queue."""

from __future__ import annotations

import json
import time

from conftest import Procs, run_cli, wait_for

from yadtq.broker.clients import make_consumer
from yadtq.client.client import YADTQ
from yadtq.config import Settings


def _ids_on(settings: Settings, topic: str, want: set[str]) -> set[str]:
    """The task ids found on `topic` (read from the beginning, as far as `want` needs)."""
    consumer = make_consumer(settings, None, auto_offset_reset="earliest")
    try:
        consumer.subscribe([topic])
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while not want <= seen and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                seen.update(json.loads(r.value)["task-id"] for r in recs)
        return seen
    finally:
        consumer.close()


def test_queues_route_run_high_first_and_report_depth(settings: Settings, q: YADTQ, procs: Procs) -> None:
    import queue_tasks  # noqa: F401 (registers send_email, declared for queue "email")

    low = [q.submit("sleep", [0.05], queue="low") for _ in range(8)]  # the low backlog came first
    high = [q.submit("sleep", [0.05], queue="high") for _ in range(8)]
    by_declaration = q.submit("send_email", ["ada@example.org"])
    by_override = q.submit("add", [1, 2], queue="email")
    assert {q.status(t).queue for t in (by_declaration, by_override)} == {"email"}
    shown = json.loads(run_cli(settings, "queues", "--json").stdout)
    assert {r["queue"]: r["queued"] for r in shown} == {"default": 0, "email": 2, "high": 8, "low": 8}
    assert {by_declaration, by_override} <= _ids_on(settings, settings.topic_for("email"), {by_declaration})

    procs.worker("W1", "--queues", "high,low,email", "--concurrency", "1", "--tasks", "queue_tasks")
    everything = [*low, *high, by_declaration, by_override]
    wait_for(lambda: all(q.status(t).status == "success" for t in everything), 90, 0.2, "every queue's tasks")
    assert q.result(by_declaration) == "sent to ada@example.org" and q.result(by_override) == 3
    started = {t: q.status(t).started or 0.0 for t in everything}
    last_high = max(started[t] for t in high)
    # One slot, both backlogged: the low queue's tasks wait for the high ones (one may start while
    # the first fetch has brought only low records).
    assert sum(1 for t in low if started[t] < last_high) <= 1, sorted(started.values())
    assert max(started[t] for t in (by_declaration, by_override)) > max(started[t] for t in low)
    rows = {r.queue: r for r in q.queues()}
    assert rows["high"].queued == rows["low"].queued == rows["email"].queued == 0
    assert rows["high"].throughput > 0

"""Prometheus metrics, read from Redis at scrape time with bounded reads.

Gauges (tasks by status, workers, partitions, dead letters) are read afresh on
each scrape. Per-type counters and the run-time and queue-wait histograms are
cumulative since this API process started: each scrape reads the tasks that
finished since the previous one (at most `TAIL_MAX` per status and scrape; the
rest on the next) and observes them, as an exporter watching events would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from yadtq.api.queue_metrics import QueueCollector
from yadtq.broker.backlog import Backlog
from yadtq.store import search
from yadtq.store.backend import Backend
from yadtq.store.live_state import ALIVE, DEAD, LEFT, LiveState
from yadtq.store.queue_stats import QueueStats
from yadtq.task.status import FINAL, FINAL_IN_ORDER, Status

TAIL_MAX = 5_000
MAX_TYPES = 200  # distinct task labels kept; a client may send any name, Prometheus needs bounded labels
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class LiveCollector(Collector):
    """Gauges and per-worker counters of the current state."""

    def __init__(self, backend: Backend, live: LiveState, backlog: Backlog | None = None) -> None:
        self.backend = backend
        self.live = live
        self.backlog = backlog

    def collect(self) -> Iterator[Metric]:
        counts = self.backend.counts()
        tasks = GaugeMetricFamily("yadtq_tasks", "Tasks by status (the status indexes).", labels=["status"])
        for status, n in counts.items():
            tasks.add_metric([status], n)
        yield tasks
        oldest = self.backend.oldest_entered(Status.QUEUED)
        yield GaugeMetricFamily("yadtq_oldest_queued_age_seconds", "Age of the task queued longest (0: none).",
                                value=max(0.0, time.time() - oldest) if oldest is not None else 0.0)
        worker_list = search.workers(self.live)
        by_status = GaugeMetricFamily("yadtq_workers", "Workers in the registry by status.", labels=["status"])
        for status in (ALIVE, DEAD, LEFT):
            by_status.add_metric([status], sum(1 for w in worker_list if w.get("status") == status))
        yield by_status
        done, failed = self.live.completions()
        ok = CounterMetricFamily("yadtq_worker_tasks_succeeded", "Tasks each worker completed successfully.",
                                 labels=["worker"])
        for name, n in sorted(done.items()):
            ok.add_metric([name], n)
        yield ok
        bad = CounterMetricFamily("yadtq_worker_tasks_failed", "Tasks that failed for good on each worker.",
                                  labels=["worker"])
        for name, n in sorted(failed.items()):
            bad.add_metric([name], n)
        yield bad
        slots = GaugeMetricFamily("yadtq_worker_slots", "Tasks a live worker may run at once.", labels=["worker"])
        busy = GaugeMetricFamily("yadtq_worker_slots_in_use", "Tasks a live worker is running.", labels=["worker"])
        for w in worker_list:
            if w.get("status") == ALIVE:
                slots.add_metric([w["name"]], float(w.get("concurrency") or 0))
                busy.add_metric([w["name"]], w["slots_in_use"])
        yield slots
        yield busy
        ends = self.backlog.end_offsets() if self.backlog else None
        yield from self._partitions(search.partitions(worker_list, ends))
        yield GaugeMetricFamily("yadtq_dead_letters", "Dead letters kept (capped list).",
                                value=self.live.dead_letter_count())
        deaths = self.live.failures(1000)
        yield GaugeMetricFamily("yadtq_worker_deaths_recorded", "Worker deaths in the kept failure history.",
                                value=len(deaths))
        yield GaugeMetricFamily("yadtq_lost_runs_recorded",
                                "Task runs cut off by a worker's death, in the kept failure history.",
                                value=sum(len(d.get("tasks") or []) for d in deaths))

    def _partitions(self, rows: list[dict[str, object]]) -> Iterator[Metric]:
        labels = ["partition", "owner"]
        fams = {
            "buffered": GaugeMetricFamily("yadtq_partition_buffered_tasks", "Records buffered past the committed "
                                          "position of a partition.", labels=labels),
            "running": GaugeMetricFamily("yadtq_partition_running_tasks", "Tasks of a partition running now.",
                                         labels=labels),
            "committed": GaugeMetricFamily("yadtq_partition_committed_offset", "Committed position of a partition.",
                                           labels=labels),
            "paused": GaugeMetricFamily("yadtq_partition_paused", "1 when a partition's fetching is paused.",
                                        labels=labels),
            "in_broker": GaugeMetricFamily("yadtq_partition_backlog_records", "Records past a partition's "
                                           "committed position not read yet (in the broker).", labels=labels),
        }
        waiting = GaugeMetricFamily("yadtq_partition_waiting_tasks", "Tasks of a partition waiting, by reason.",
                                    labels=[*labels, "reason"])
        for row in rows:
            key = [str(row["partition"]), str(row["owner"] or "")]
            for field, fam in fams.items():
                value = row.get(field)
                if value is not None:
                    fam.add_metric(key, float(value))  # type: ignore[arg-type]
            for reason, n in dict(row.get("waiting") or {}).items():  # type: ignore[call-overload]
                waiting.add_metric([*key, str(reason)], float(n))
        yield from fams.values()
        yield waiting


class FinishedTail:
    """Feeds the per-type counters and histograms with the tasks finished since the last scrape."""

    def __init__(self, backend: Backend, registry: CollectorRegistry) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        now = time.time()
        self.pos: dict[str, tuple[float, str]] = {s: (now, "") for s in FINAL}
        self.types: set[str] = set()
        self.finished = Counter("yadtq_tasks_finished", "Tasks that reached a final status, by type.",
                                ["task", "status"], registry=registry)
        self.retries = Counter("yadtq_task_retries", "Attempts beyond the first, of finished tasks, by type.",
                               ["task"], registry=registry)
        self.run = Histogram("yadtq_task_run_seconds", "Run time of a task's last attempt, by type.", ["task"],
                             buckets=BUCKETS, registry=registry)
        self.wait = Histogram("yadtq_task_queue_wait_seconds", "Time from submission to the start of the "
                              "last attempt, by type.", ["task"], buckets=BUCKETS, registry=registry)

    def _label(self, task: str) -> str:
        if task in self.types or len(self.types) < MAX_TYPES:
            self.types.add(task)
            return task
        return "other"

    def update(self) -> None:
        with self.lock:
            for status in FINAL_IN_ORDER:
                self._tail(status)

    def _tail(self, status: str) -> None:
        score, last = self.pos[status]
        got = self.backend.entered_since(status, score, TAIL_MAX)
        fresh = [(m, s) for m, s in got if (s, m) > (score, last)]
        if not fresh:
            return
        for rec in self.backend.get_many([m for m, _ in fresh]):
            if rec.status != status:
                continue
            label = self._label(rec.task)
            self.finished.labels(label, status).inc()
            if rec.attempts > 1:
                self.retries.labels(label).inc(rec.attempts - 1)
            if rec.started and rec.finished and status != Status.CANCELLED:
                self.run.labels(label).observe(max(0.0, rec.finished - rec.started))
            if rec.started and rec.submitted and status != Status.CANCELLED:
                self.wait.labels(label).observe(max(0.0, rec.started - rec.submitted))
        member, s = fresh[-1]
        self.pos[status] = (s, member)


class Metrics:
    """The registry `/metrics` renders."""

    def __init__(self, backend: Backend, live: LiveState, backlog: Backlog | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LiveCollector(backend, live, backlog))
        self.registry.register(QueueCollector(QueueStats(backend.r, backend.keys, backend.space)))
        self.tail = FinishedTail(backend, self.registry)

    def render(self) -> bytes:
        self.tail.update()
        return generate_latest(self.registry)

"""Prometheus gauges per named queue (label `queue`), read from Redis at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from yadtq.store.queue_stats import QueueStats


class QueueCollector(Collector):
    def __init__(self, stats: QueueStats, window: float = 60.0) -> None:
        self.stats = stats
        self.window = window

    def collect(self) -> Iterator[Metric]:
        rows = self.stats.all(window=self.window)
        depth = GaugeMetricFamily("yadtq_queue_depth", "Tasks waiting in each named queue.", labels=["queue"])
        lag = GaugeMetricFamily("yadtq_queue_lag_seconds", "Seconds the oldest waiting task of each queue has "
                                "waited (0: none waits).", labels=["queue"])
        rate = GaugeMetricFamily("yadtq_queue_throughput", "Tasks of each queue finished per second over the "
                                 f"last {self.window:g} s (estimated).", labels=["queue"])
        dead = GaugeMetricFamily("yadtq_queue_dead_letters", "Dead letters kept per queue.", labels=["queue"])
        for r in rows:
            depth.add_metric([r.queue], r.queued)
            lag.add_metric([r.queue], r.lag or 0.0)
            rate.add_metric([r.queue], r.throughput)
            dead.add_metric([r.queue], r.dead_letters)
        yield from (depth, lag, rate, dead)

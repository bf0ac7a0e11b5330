"""An idle worker's fetches wait long at a broker that answers a waiting fetch when a record
arrives (Apache Kafka: 500 ms by default), and the usual `fetch_max_wait_ms` on the embedded
broker, which holds every fetch that long; a busy worker's fetches always wait the short time
(yadtq/broker/fetch_wait.py)."""

from __future__ import annotations

import pytest
from conftest import Procs, ServiceAddrs

from yadtq.broker.fetch_wait import idle_fetch_wait_ms
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.worker.source import KafkaSource


def test_the_idle_fetch_wait_follows_the_broker(settings: Settings, services: ServiceAddrs) -> None:
    default = settings.replace(idle_fetch_wait_ms=0)
    expected = default.fetch_max_wait_ms if services.kind == "embedded" else 500
    assert idle_fetch_wait_ms(default) == expected
    assert idle_fetch_wait_ms(settings.replace(idle_fetch_wait_ms=300)) == 300
    # Never shorter than the busy wait.
    assert idle_fetch_wait_ms(settings.replace(idle_fetch_wait_ms=5, fetch_max_wait_ms=20)) == 20
    source = KafkaSource(default, "W1", standby=False)
    try:
        source.poll(0.05)  # the loop waits: nothing to start
        assert source.consumer._fetcher.config["fetch_max_wait_ms"] == expected
        source.poll(0)  # the loop is busy
        assert source.consumer._fetcher.config["fetch_max_wait_ms"] == default.fetch_max_wait_ms
    finally:
        source.close()


@pytest.mark.brokers("kafka")
def test_a_task_reaches_an_idle_worker_without_waiting_out_its_fetch(settings: Settings, procs: Procs) -> None:
    s = settings.replace(idle_fetch_wait_ms=4000)
    procs.settings = s
    procs.worker("W1", settings=s)
    procs.wait_assigned(["W1"])
    with YADTQ(s) as q:
        assert q.result(q.submit("add", [1, 2]), timeout=30) == 3  # connections made, the worker idle
        waits = []
        for i in range(5):
            rec = q.wait(q.submit("add", [i, 1]), timeout=30)
            assert rec.status == "success" and rec.started is not None and rec.submitted is not None
            waits.append(rec.started - rec.submitted)
    print(f"submit -> start: {[round(w, 3) for w in waits]} s with idle_fetch_wait_ms=4000")
    assert max(waits) < 2.0, waits

"""An idle worker's fetches wait long at a broker that answers a waiting fetch when a record
arrives (Apache Kafka: 500 ms by default), and the usual `fetch_max_wait_ms` on the embedded
broker, which holds every fetch that long; a busy worker's fetches always wait the short time
(yadtq/broker/fetch_wait.py)."""

from __future__ import annotations

from conftest import ServiceAddrs

from yadtq.broker.fetch_wait import idle_fetch_wait_ms
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

"""The default session timeout follows the broker (yadtq/broker/session.py): 4 s on the embedded
broker, which holds a group's join for half of it; 6 s, Apache Kafka's lowest, elsewhere. A set
value is used as it is, and a worker joins with what this resolves to."""

from __future__ import annotations

from conftest import ServiceAddrs

from yadtq.broker.session import longest_session_s, session_timeout_ms
from yadtq.config import Settings
from yadtq.worker.source import KafkaSource


def test_the_default_session_timeout_is_the_brokers(settings: Settings, services: ServiceAddrs) -> None:
    default = settings.replace(session_timeout_ms=0)
    expected = 4_000 if services.kind == "embedded" else 6_000
    assert session_timeout_ms(default) == expected
    assert session_timeout_ms(settings.replace(session_timeout_ms=7_000)) == 7_000
    assert longest_session_s(default) == 6.0
    source = KafkaSource(default, "W1", standby=False)
    try:
        assert source.session_timeout_ms == expected
        assert source.consumer.config["session_timeout_ms"] == expected
    finally:
        source.close()

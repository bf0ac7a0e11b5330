"""Kafka clients built from Settings, through the standard protocol only.

kafka-python waits a long time for a broker that is not there; every factory
here first checks the address answers, so a dead broker is one clear
`BrokerUnavailable` within `connect_timeout` seconds.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    InvalidConfigurationError,
    InvalidReplicationFactorError,
    KafkaConfigurationError,
    KafkaError,
    TopicAlreadyExistsError,
)

from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)


def check_reachable(settings: Settings) -> None:
    """Raises `BrokerUnavailable` unless some bootstrap address accepts a TCP connection."""
    last = "no address given"
    for addr in settings.kafka_bootstrap.split(","):
        host, _, port = addr.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                          timeout=settings.connect_timeout):
                return
        except (OSError, ValueError) as exc:
            last = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    raise BrokerUnavailable(settings.kafka_bootstrap, last)


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "bootstrap_timeout_ms": int(settings.connect_timeout * 1000),
        **dict(settings.kafka_options),
    }


def _guarded(settings: Settings, build: Callable[[], Any]) -> Any:
    check_reachable(settings)
    try:
        return build()
    except KafkaConfigurationError as exc:
        raise ConfigError(f"Kafka client options: {exc}") from None
    except (KafkaError, ValueError) as exc:
        if isinstance(exc, ValueError) and "Unrecognized configs" in str(exc):
            raise ConfigError(f"Kafka client options: {exc}") from None
        raise BrokerUnavailable(settings.kafka_bootstrap, str(exc)) from None


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    config = {
        **_common(settings),
        # A replicated topic is only as durable as acks=all makes it; on a single broker it costs nothing more.
        "acks": 1 if settings.replication_factor == 1 else "all",
        # Duplicates are harmless (the claim skips finished tasks); idempotence costs a round trip.
        "enable_idempotence": False,
        "linger_ms": settings.linger_ms,
        "max_request_size": max(settings.max_message_bytes * 2, 1_048_576),
        **overrides,
    }
    return _guarded(settings, lambda: KafkaProducer(**config))


def make_consumer(settings: Settings, group: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer with manual commits and the timings BROKER_NOTES.md calls for."""
    config = {
        **_common(settings),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "max_poll_records": settings.max_poll_records,
        "max_partition_fetch_bytes": max(settings.max_message_bytes * 2, 1_048_576),
        **overrides,
    }
    return _guarded(settings, lambda: KafkaConsumer(**config))


def make_admin(settings: Settings) -> KafkaAdminClient:
    return _guarded(settings, lambda: KafkaAdminClient(**_common(settings)))


def topic_replication(settings: Settings, brokers: int) -> tuple[int, dict[str, str]]:
    """Replication factor and topic configs for a new topic; a setting of 0 fits the cluster found.

    Fitted: 3 replicas with min.insync.replicas 2 on three or more brokers, so one broker can be lost
    while acks=all writes still succeed; a single broker gets 1 replica and no extra config.
    """
    replicas = settings.replication_factor or max(1, min(3, brokers))
    min_isr = settings.min_insync_replicas or max(1, min(2, replicas - 1))
    return replicas, ({"min.insync.replicas": str(min_isr)} if min_isr > 1 or settings.min_insync_replicas else {})


def ensure_topic(settings: Settings, topic: str, partitions: int, wait: float = 10.0) -> int:
    """Creates `topic` with `partitions` if missing; returns its partition count."""
    admin = make_admin(settings)
    try:
        try:
            replicas, configs = topic_replication(settings, len(admin.describe_cluster()["brokers"]))
            admin.create_topics([NewTopic(topic, partitions, replicas, topic_configs=configs)])
            log.info("created topic %s with %d partitions, %d replicas %s", topic, partitions, replicas, configs)
        except TopicAlreadyExistsError:
            pass
        except (InvalidReplicationFactorError, InvalidConfigurationError) as exc:
            raise ConfigError(f"creating topic {topic!r}: {exc} (replication_factor={settings.replication_factor}, "
                              f"min_insync_replicas={settings.min_insync_replicas})") from None
        deadline = time.monotonic() + wait
        while True:
            try:
                described = admin.describe_topics([topic])
                count = len(described[0].get("partitions", [])) if described else 0
            except KafkaError:
                count = 0
            if count or time.monotonic() > deadline:
                return count or partitions
            time.sleep(0.1)
    finally:
        admin.close()


def partitions_for(consumer_or_producer: Any, topic: str, wait: float = 10.0) -> list[int]:
    """The topic's partition ids as the client sees them in its metadata."""
    deadline = time.monotonic() + wait
    while True:
        found = consumer_or_producer.partitions_for(topic)
        if found:
            return sorted(found)
        if time.monotonic() > deadline:
            raise BrokerUnavailable("", f"topic {topic!r} has no partitions")
        time.sleep(0.1)


__all__ = ["TopicPartition", "check_reachable", "ensure_topic", "make_admin", "make_consumer",
           "make_producer", "partitions_for", "topic_replication"]

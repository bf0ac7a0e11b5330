"""Kafka clients built from Settings, through the standard protocol only.

kafka-python waits a long time for a broker that is not there; every factory
here first checks the address answers, so a dead broker is one clear
`BrokerUnavailable` within `connect_timeout` seconds.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
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

from yadtq.broker.unknown_leaders import guard_sender
from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)


def check_reachable(settings: Settings, timeout: float | None = None) -> None:
    """Raises `BrokerUnavailable` unless some bootstrap address accepts a TCP connection."""
    last = "no address given"
    for addr in settings.kafka_bootstrap.split(","):
        host, _, port = addr.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                          timeout=settings.connect_timeout if timeout is None else timeout):
                return
        except (OSError, ValueError) as exc:
            last = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    raise BrokerUnavailable(settings.kafka_bootstrap, last)


# Topics are made by `ensure_topic` with YADTQ's partition count, never as a side effect
# of a metadata request after a broker lost them (Apache Kafka honours this; tansu does not).
NO_AUTO_CREATE = {"allow_auto_create_topics": False}


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "bootstrap_timeout_ms": int(settings.connect_timeout * 1000),
        # kafka-python backs off up to 30 s between reconnects to a node that is down: a client that
        # waited out a broker outage came back up to that long after the broker did (the monitor
        # heard no heartbeat for seconds after its probe saw the broker back, and declared live
        # workers DEAD). Apache Kafka's Java client stops doubling at 1 s.
        "reconnect_backoff_max_ms": 1000,
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
        **NO_AUTO_CREATE,
        # A replicated topic is only as durable as acks=all makes it; on a single broker it costs nothing more.
        "acks": 1 if settings.replication_factor == 1 else "all",
        # Duplicates are harmless (the claim skips finished tasks); idempotence costs a round trip.
        "enable_idempotence": False,
        "linger_ms": settings.linger_ms,
        # A send rides through a leader election (retries until delivery_timeout_ms), and blocks
        # for metadata (kafka-python's 60 s for a topic the broker lost) no longer than that either:
        # a caller hears of an outage within publish_timeout.
        "max_block_ms": int(settings.publish_timeout * 1000),
        "delivery_timeout_ms": int(settings.publish_timeout * 1000),
        "request_timeout_ms": max(1000, min(30_000, int(settings.publish_timeout * 1000) - settings.linger_ms)),
        "max_request_size": max(settings.max_message_bytes * 2, 1_048_576),
        **overrides,
    }
    producer = _guarded(settings, lambda: KafkaProducer(**config))
    guard_sender(producer)  # never a tight loop on a leader the metadata no longer lists
    return producer


def close_producer(producer: KafkaProducer, settings: Settings, timeout: float = 0.0) -> None:
    """Closes `producer` within `timeout` seconds, and for certain even when a record is still pending.

    kafka-python (3.0.12) flushes first in close() and, when a record is still pending to a broker
    that went away, raises and leaves the producer open: its I/O thread would go on reconnecting
    for good, one more for each failed publish of a long-running client. A pending record fails by
    delivery_timeout_ms (publish_timeout, make_producer); a short-lived thread closes it then."""
    try:
        producer.close(timeout=timeout)
        return
    except KafkaError as exc:
        log.debug("a producer with records pending closes in the background: %s", exc)

    def close_when_failed() -> None:
        try:
            producer.close(timeout=settings.publish_timeout + 1)
        except KafkaError as exc:  # not seen: a pending record fails by its delivery timeout
            log.warning("a producer did not close: %s", exc)

    threading.Thread(target=close_when_failed, name="yadtq-producer-close", daemon=True).start()


# Apache Kafka's lowest session timeout by default (group.min.session.timeout.ms).
KAFKA_SESSION_MS = 6_000


def make_consumer(settings: Settings, group: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer with manual commits and the timings docs/brokers.md calls for."""
    config = {
        **_common(settings),
        **NO_AUTO_CREATE,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # The setting, or Kafka's lowest default; a worker passes yadtq/broker/session.py's.
        "session_timeout_ms": settings.session_timeout_ms or KAFKA_SESSION_MS,
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


def epoch_topic(settings: Settings) -> str:
    """One-partition topic holding the broker's epoch marker (see `EpochProbe`)."""
    return f"{settings.topic}.epoch"


class EpochProbe:
    """Tells whether the broker still holds the log it held before.

    A memory-only broker (the embedded one) loses every topic and message when
    it restarts, while Redis keeps the task records. The probe keeps one marker
    record (a random epoch id) at the start of `epoch_topic`; an empty topic
    means the log is gone. A durable broker keeps the marker, so its restarts
    republish nothing. Every reader takes the first record as the epoch, so two
    writers racing agree.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tp = TopicPartition(epoch_topic(settings), 0)
        self._consumer: Any = None

    def read(self) -> str | None:
        """The epoch on the broker now, or None when the marker topic is empty or missing.

        Raises `BrokerUnavailable` (or a `KafkaError`) when the broker does not answer.
        """
        if self._consumer is None:
            # A one-off offsets read: a short request timeout, and a fetch wait below it (Kafka's rule).
            self._consumer = make_consumer(self.settings, None, fetch_max_wait_ms=100, request_timeout_ms=
                                           int(max(self.settings.connect_timeout, 1.0) * 1000))
            self._consumer.assign([self.tp])
        end = self._consumer.end_offsets([self.tp]).get(self.tp, 0)
        if not end:
            return None
        self._consumer.seek_to_beginning(self.tp)
        deadline = time.monotonic() + self.settings.connect_timeout
        while time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=200, max_records=1).values():
                for rec in records:
                    return _epoch_of(rec.value)
        return None

    def write(self) -> str:
        """Puts a new marker (when the topic is still empty) and returns the epoch now in force."""
        ensure_topic(self.settings, self.tp.topic, 1)
        producer = make_producer(self.settings, linger_ms=0)
        try:
            epoch = uuid.uuid4().hex
            producer.send(self.tp.topic, json.dumps({"epoch": epoch, "ts": time.time()}).encode(),
                          partition=0).get(timeout=self.settings.connect_timeout)
        finally:
            close_producer(producer, self.settings, self.settings.connect_timeout)
        return self.read() or epoch

    def current(self) -> str:
        """The epoch on the broker now, putting the marker first when there is none yet."""
        return self.read() or self.write()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _epoch_of(raw: bytes | None) -> str:
    try:
        value = json.loads(raw or b"")
        return str(value["epoch"])
    except (ValueError, KeyError, TypeError):
        return "unreadable"


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


__all__ = [
    "EpochProbe",
    "TopicPartition",
    "check_reachable",
    "close_producer",
    "ensure_topic",
    "epoch_topic",
    "make_admin",
    "make_consumer",
    "make_producer",
    "partitions_for",
    "topic_replication",
]

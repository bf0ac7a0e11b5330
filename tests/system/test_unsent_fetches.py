"""A fetch kafka-python could not send does not stop the worker fetching (yadtq/broker/unsent_fetches.py).

When a broker is killed while it leads a partition, the client may hold metadata that names the
dead broker as leader but no longer lists it; the fetch to it then raises `UnknownBrokerIdError`
out of `poll` (a 3-node cluster's coordinator kill did so in CI). kafka-python 3.0.12 then kept
the node marked as having a fetch in flight, and never fetched from it again: a worker that
took no more tasks from the partitions that node led, and none at all once the node came back.
The fault is injected here in the client's own send, the one place it happens, on a real broker.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.errors import UnknownBrokerIdError

from yadtq.broker.clients import ensure_topic, make_producer
from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.monitor.monitor import Monitor
from yadtq.worker.source import KafkaSource


def _produce(s: Settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(s, linger_ms=0)
    try:
        for v in values:
            producer.send(topic, v)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _take(source: KafkaSource, want: set[bytes], timeout: float) -> set[bytes]:
    got: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while not want <= got and time.monotonic() < deadline:
        got.update(r.value for r in source.poll(0.1) if r.value is not None)
    return got & want


def _refuse_one_fetch(consumer: Any) -> list[Any]:
    """Makes the consumer's next fetch fail as kafka-python's own send does for a node missing from
    its metadata; the list gets the node's id when it happened."""
    manager = consumer._fetcher._manager
    send = manager.send
    refused: list[Any] = []

    def send_once_to_an_unknown_node(request: Any, node_id: Any = None, **kw: Any) -> Any:
        if not refused and type(request).__name__ == "FetchRequest":
            refused.append(node_id)
            raise UnknownBrokerIdError(node_id)
        return send(request, node_id=node_id, **kw)

    manager.send = send_once_to_an_unknown_node
    return refused


def test_a_fetch_that_could_not_be_sent_does_not_stop_the_worker_fetching(settings: Settings) -> None:
    s = settings
    ensure_topic(s, s.topic, s.partitions)
    source = KafkaSource(s, "W1", standby=False)
    try:
        first = {f"a{i}".encode() for i in range(40)}
        _produce(s, s.topic, sorted(first))
        assert _take(source, first, 60) == first

        refused = _refuse_one_fetch(source.consumer)
        then = {f"b{i}".encode() for i in range(40)}
        _produce(s, s.topic, sorted(then))
        got = _take(source, then, 30)
        assert refused, "no fetch was sent after the first records"
        assert got == then, f"{len(then - got)} of {len(then)} records never fetched after the fault"
    finally:
        source.close()


def test_the_monitor_reads_heartbeats_again_after_a_fetch_that_could_not_be_sent(
        settings: Settings) -> None:
    """The monitor's own consumer: stuck on the heartbeats' partition it would declare every worker dead."""
    monitor = Monitor(settings, events=EventLog(None, "monitor"))
    monitor.connect()
    try:
        def read_up_to(end: int) -> bool:
            deadline = time.monotonic() + 20
            while monitor._offset != end and time.monotonic() < deadline:
                monitor._read_heartbeats()
            return monitor._offset == end

        _produce(settings, settings.heartbeat_topic, [b"not a beat"] * 5)  # read and skipped: only the offset counts
        assert read_up_to(5)
        refused = _refuse_one_fetch(monitor.consumer)
        _produce(settings, settings.heartbeat_topic, [b"not a beat"] * 5)
        caught_up = read_up_to(10)
        assert refused, "no fetch was sent after the first records"
        assert caught_up, f"the monitor stopped at offset {monitor._offset} of 10 after the fault"
    finally:
        monitor.consumer.close()
        monitor.epoch.close()
        monitor.client.close()

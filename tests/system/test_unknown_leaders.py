"""A producer whose metadata names a leader it no longer lists waits for fresh metadata, then delivers
(yadtq/broker/unknown_leaders.py).

kafka-python 3.0.12's I/O thread raised `UnknownBrokerIdError` out of each turn when it tried to
connect to such a leader, and tried again at once: half a million tracebacks from one producer in a
3-node cluster test after a coordinator's kill, a core burnt until the process ended. The fault is
injected here in the producer's own connect, the one place it happens, on a real broker.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.errors import UnknownBrokerIdError

from yadtq.broker.clients import ensure_topic, make_producer
from yadtq.config import Settings

FAULT_SECONDS = 1.0


def test_a_producer_that_meets_an_unknown_leader_waits_for_metadata_then_delivers(settings: Settings) -> None:
    s = settings
    ensure_topic(s, s.topic, s.partitions)
    producer = make_producer(s, linger_ms=0)
    try:
        client = producer._sender._client
        connect, ready = client.maybe_connect, client.is_ready
        raised: list[Any] = []
        until = time.monotonic() + FAULT_SECONDS

        # As for a leader that died: no connection to it, and none can be made while the metadata
        # names it as the leader but no longer lists it.
        def not_ready_while_lost(node_id: Any, **kw: Any) -> Any:
            return time.monotonic() >= until and ready(node_id, **kw)

        def connect_to_a_leader_the_metadata_lost(node_id: Any, **kw: Any) -> Any:
            if time.monotonic() < until:
                raised.append(node_id)
                raise UnknownBrokerIdError(node_id)
            return connect(node_id, **kw)

        client.is_ready = not_ready_while_lost
        client.maybe_connect = connect_to_a_leader_the_metadata_lost
        future = producer.send(s.topic, b"after the fault", partition=0)
        producer.flush(timeout=30)
        assert future.get(timeout=1).offset >= 0
        assert raised, "the producer never connected to the partition's leader: the fault was not met"
        # One turn per retry_backoff_ms (100 ms) while the fault lasts; a spinning thread made hundreds or more.
        assert len(raised) <= 5 * FAULT_SECONDS / 0.1, f"{len(raised)} connects in {FAULT_SECONDS:g} s: it spins"
    finally:
        producer.close(timeout=5)

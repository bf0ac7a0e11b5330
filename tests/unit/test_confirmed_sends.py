"""A worker's sends are confirmed: a record the broker refuses is sent again, never silently lost
(kafka-python's flush raises for no failed send), and one it always refuses is given up in the end."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, UnknownError
from kafka.future import Future

from yadtq.broker.confirmed_sends import ATTEMPTS, ConfirmedSends, Send


class Producer:
    """Refuses the first `refusals` sends of each value; `raises` sends raise instead of sending."""

    def __init__(self, refusals: int = 0, raises: int = 0) -> None:
        self.refusals = refusals
        self.raises = raises
        self.sent: list[bytes] = []
        self.delivered: list[bytes] = []
        self._futures: list[tuple[Future, bytes]] = []

    def send(self, topic: str, *, key: bytes | None, value: bytes, headers: list[Any], partition: int | None) -> Future:
        if self.raises:
            self.raises -= 1
            raise KafkaTimeoutError("no metadata")
        self.sent.append(value)
        f = Future()
        self._futures.append((f, value))
        return f

    def flush(self, timeout: float) -> None:  # the broker answers every send in flight
        for f, value in self._futures:
            if self.sent.count(value) <= self.refusals:
                f.failure(UnknownError())
            else:
                self.delivered.append(value)
                f.success(None)
        self._futures = []


def _send(value: bytes) -> Send:
    return Send("tasks", b"k", value, [], None)


def test_a_refused_record_is_sent_again_until_delivered() -> None:
    producer = Producer(refusals=2)
    sends = ConfirmedSends(producer)
    sends.send(_send(b"a"))
    sends.send(_send(b"b"))
    sends.flush(timeout=1)
    assert sorted(producer.delivered) == [b"a", b"b"]
    assert producer.sent.count(b"a") == 3 and sends.pending == 0


def test_a_record_always_refused_is_given_up_after_its_attempts(caplog: pytest.LogCaptureFixture) -> None:
    producer = Producer(refusals=100)
    sends = ConfirmedSends(producer)
    sends.send(_send(b"a"))
    sends.flush(timeout=1)  # returns: a record the broker never takes cannot hold the worker's commits forever
    assert producer.sent.count(b"a") == ATTEMPTS and not producer.delivered and sends.pending == 0
    assert "refused a record for tasks 5 times, dropped" in caplog.text


def test_a_send_again_that_cannot_be_made_is_kept_for_the_next_flush() -> None:
    producer = Producer(refusals=1)
    sends = ConfirmedSends(producer)
    sends.send(_send(b"a"))
    producer.raises = 1  # the broker is away when it is sent again
    with pytest.raises(KafkaTimeoutError):
        sends.flush(timeout=1)
    assert sends.pending == 1 and not producer.delivered
    sends.flush(timeout=1)
    assert producer.delivered == [b"a"] and sends.pending == 0


def test_sends_the_broker_took_are_forgotten() -> None:
    producer = Producer()
    sends = ConfirmedSends(producer)
    for i in range(3):
        sends.send(_send(bytes([i])))
    sends.flush(timeout=1)
    assert len(producer.delivered) == 3 and producer.sent == producer.delivered and sends.pending == 0

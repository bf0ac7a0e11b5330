"""A worker's sends, each confirmed: a record the broker refuses is sent again.

What a worker publishes (a retry due, a workflow's next step, a schedule's slot, a task
republished) is already in Redis as `queued` under the broker's current epoch, so the
monitor's sweep after a broker restart never publishes it again: a refused record would be
a task lost. kafka-python's `flush()` waits for every send but raises for none that failed,
so the failures are looked for here, after each flush, and sent again at once (a duplicate
message is harmless: the claim runs a task once). The embedded broker refuses some produces
right after a restart (UnknownError while two producers race for a partition's first offset).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

from kafka.errors import KafkaError

log = logging.getLogger(__name__)

ATTEMPTS = 5  # sends of one record in all; past them a refusal is logged as an error and the record dropped


@dataclass(frozen=True)
class Send:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None
    attempt: int = 1


class ConfirmedSends:
    """`send` as the producer's; `flush` also sends again what the broker refused, until none is left."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, Send]] = []  # (future, or None when the send itself failed; what was sent)

    def send(self, s: Send) -> None:
        """Raises what the producer's send raises (the broker away past `max_block_ms`)."""
        future = self.producer.send(s.topic, key=s.key, value=s.value, headers=s.headers, partition=s.partition)
        with self._lock:
            self._pending.append((future, s))

    def flush(self, timeout: float) -> None:
        """The producer's flush (raises what it raises; sends not done stay for the next flush), then each
        refused record sent again and waited for, up to ATTEMPTS sends of it."""
        while True:
            self.producer.flush(timeout=timeout)
            refused = self._refused()
            if not refused:
                return
            for s, exc in refused:
                if s.attempt >= ATTEMPTS:
                    log.error("the broker refused a record for %s %d times, dropped: %s", s.topic, s.attempt, exc)
                    continue
                log.warning("the broker refused a record for %s (%s): sending it again", s.topic, exc)
                again = replace(s, attempt=s.attempt + 1)
                try:
                    self.send(again)
                except KafkaError as send_exc:  # kept, and tried again at the next flush
                    with self._lock:
                        self._pending.append((None, again))
                    raise send_exc from exc

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _refused(self) -> list[tuple[Send, BaseException | None]]:
        """The sends that failed (or could not be made), taken out; the ones done are forgotten."""
        with self._lock:
            done = [(f, s) for f, s in self._pending if f is None or f.is_done]
            self._pending = [(f, s) for f, s in self._pending if f is not None and not f.is_done]
        return [(s, None if f is None else f.exception) for f, s in done if f is None or f.failed()]

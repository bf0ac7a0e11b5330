"""Publishing task messages from asyncio without blocking the event loop.

kafka-python's producer is thread based: `send()` appends to a buffer (and may block for
metadata or buffer space) and returns a future its sender thread completes when the broker
acks. So the producer is made, and `send()` called, on a worker thread (`asyncio.to_thread`),
and each future's callbacks complete an asyncio future on the loop (`call_soon_threadsafe`):
no thread waits on a flush, and the loop only awaits acks.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from kafka.errors import KafkaError

from yadtq.broker.clients import close_producer, ensure_topic, make_producer
from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable
from yadtq.task.messages import Header, TaskMessage, key_partition


class AsyncPublisher:
    """The producer of one `AsyncYADTQ`, made on first use (read-only clients need no broker)."""

    def __init__(self, settings: Settings, create_topic: bool = True) -> None:
        self.settings = settings
        self._create_topic = create_topic
        self._producer: Any = None
        self._partitions: dict[str, list[int]] = {}  # per topic (a queue's), as the producer sees it
        self._next = itertools.count()
        self._lock = asyncio.Lock()

    async def send(self, messages: Sequence[TaskMessage], headers: Sequence[Header] = ()) -> None:
        """Publishes `messages` and waits for the broker's acks (up to `publish_timeout`); raises
        `BrokerUnavailable` when that fails, and drops the producer so the next call starts afresh."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        try:
            producer = await self._ready()
            acks = await asyncio.to_thread(self._send_all, producer, messages, list(headers), loop)
            await asyncio.wait_for(asyncio.gather(*acks), self.settings.publish_timeout)
        except (KafkaError, TimeoutError) as exc:
            await self.close(timeout=0)
            raise BrokerUnavailable(self.settings.kafka_bootstrap, f"publish failed: {exc!r}") from None

    async def close(self, timeout: float = 5) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(close_producer, producer, self.settings, timeout)

    async def _ready(self) -> Any:
        async with self._lock:
            if self._producer is None:
                self._partitions = {}
                self._producer = await asyncio.to_thread(make_producer, self.settings)
            return self._producer

    def _partitions_of(self, producer: Any, topic: str) -> list[int]:
        """The partitions of a queue's topic, made the first time it is sent to unless told not to (thread)."""
        if topic not in self._partitions:
            if self._create_topic:
                ensure_topic(self.settings, topic, self.settings.partitions)
            found = producer.partitions_for(topic)
            self._partitions[topic] = sorted(found) if found else list(range(self.settings.partitions))
        return self._partitions[topic]

    def _send_all(self, producer: Any, messages: Sequence[TaskMessage], headers: list[Header],
                  loop: asyncio.AbstractEventLoop) -> list[asyncio.Future[Any]]:
        """Calls `send()` for each message (thread); returns asyncio futures of their acks."""
        acks: list[asyncio.Future[Any]] = []
        for m in messages:
            topic = self.settings.topic_for(m.queue)
            parts = self._partitions_of(producer, topic)
            partition = (key_partition(m.key, parts) if m.key is not None
                         else parts[next(self._next) % len(parts)])
            sent = producer.send(topic, key=m.record_key, value=m.encode(),
                                 partition=partition, headers=headers or None)
            ack: asyncio.Future[Any] = loop.create_future()
            sent.add_callback(_settle, loop, ack, None)
            sent.add_errback(_fail, loop, ack)
            acks.append(ack)
        return acks


def _settle(loop: asyncio.AbstractEventLoop, ack: asyncio.Future[Any], _: object, metadata: Any) -> None:
    loop.call_soon_threadsafe(_set, ack, metadata, None)


def _fail(loop: asyncio.AbstractEventLoop, ack: asyncio.Future[Any], exc: BaseException) -> None:
    loop.call_soon_threadsafe(_set, ack, None, exc)


def _set(ack: asyncio.Future[Any], metadata: Any, exc: BaseException | None) -> None:
    if ack.done():  # cancelled by a timeout meanwhile
        return
    if exc is not None:
        ack.set_exception(exc)
    else:
        ack.set_result(metadata)

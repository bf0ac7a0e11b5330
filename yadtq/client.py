"""The client API: submit tasks, track them by id.

    q = YADTQ.from_env()
    tid = q.submit("add", [1, 2])
    q.result(tid, timeout=10)          # -> 3

A task id is made on the client (uuid4); the `queued` record is written to
Redis before the message is published, so a status query never races the
worker.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kafka.errors import KafkaError

from yadtq.backend import Backend, TaskRecord, connect_redis
from yadtq.broker import ensure_topic, make_producer
from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable, MessageError, ResultTimeout, TaskFailed
from yadtq.live import LiveState
from yadtq.messages import TaskMessage, key_partition, new_task_id

TaskSpec = Any  # (name, args) | (name, args, kwargs) | {"task": ..., "args": ..., ...}


class YADTQ:
    def __init__(self, settings: Settings, *, create_topic: bool = True) -> None:
        self.settings = settings
        self.redis = connect_redis(settings)
        self.backend = Backend(self.redis, settings)
        self.live = LiveState(self.redis, settings)
        self._producer: Any = None
        self._create_topic = create_topic
        self._partitions: list[int] = []
        self._next = itertools.count()

    @classmethod
    def from_env(cls, **overrides: Any) -> YADTQ:
        return cls(Settings.from_env(**overrides))

    def __enter__(self) -> YADTQ:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
        self.redis.close()

    @property
    def producer(self) -> Any:
        """Made on first use, so read-only clients (dashboard, CLI status) need no broker."""
        if self._producer is None:
            if self._create_topic:
                ensure_topic(self.settings, self.settings.topic, self.settings.partitions)
            self._producer = make_producer(self.settings)
            found = self._producer.partitions_for(self.settings.topic)
            self._partitions = sorted(found) if found else list(range(self.settings.partitions))
        return self._producer

    # -- submit ------------------------------------------------------------
    def message(self, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
                tries: int | None = None, time_limit: float | None = None,
                task_id: str | None = None, key: str | None = None) -> TaskMessage:
        """Builds a validated message (raises `MessageError` for a bad one)."""
        if not isinstance(task, str) or not task:
            raise MessageError("task name must be a non-empty string")
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise MessageError("args must be a list")
        if tries is not None and tries < 1:
            raise MessageError("tries must be >= 1")
        if key is not None and (not isinstance(key, str) or not key or len(key) > 200):
            raise MessageError("key must be a non-empty string of at most 200 characters")
        m = TaskMessage(task_id or new_task_id(), task, tuple(args), dict(kwargs or {}),
                        tries or self.settings.tries, time.time(), time_limit, key)
        size = len(m.encode())
        if size > self.settings.max_message_bytes:
            raise MessageError(f"task message of {size} bytes exceeds the limit of "
                               f"{self.settings.max_message_bytes} bytes", m.task_id)
        return m

    def submit(self, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
               **options: Any) -> str:
        """Records the task as queued, publishes it, waits for the broker's ack; returns its id."""
        return self.publish([self.message(task, args, kwargs, **options)], wait=True)[0]

    def submit_many(self, specs: Iterable[TaskSpec]) -> list[str]:
        """Bulk submit: one Redis pipeline, one producer flush."""
        return self.publish([self._spec(s) for s in specs], wait=True)

    def publish(self, messages: Sequence[TaskMessage], wait: bool = True) -> list[str]:
        """Records then sends `messages` round-robin over the partitions."""
        self.backend.record_queued(messages, self.settings.tries)
        producer = self.producer
        futures = []
        try:
            for m in messages:
                partition = (key_partition(m.key, self._partitions) if m.key is not None
                             else self._partitions[next(self._next) % len(self._partitions)])
                futures.append(producer.send(self.settings.topic, key=(m.key or m.task_id).encode(),
                                             value=m.encode(), partition=partition))
            if wait:
                producer.flush(timeout=self.settings.connect_timeout * 2)
                for f in futures:
                    f.get(timeout=self.settings.connect_timeout)
        except KafkaError as exc:
            # The records stay `queued`: `yadtq requeue` (or the monitor) republishes them.
            raise BrokerUnavailable(self.settings.kafka_bootstrap, f"publish failed: {exc}") from None
        return [m.task_id for m in messages]

    def requeue(self, task_id: str) -> str:
        """Runs a failed task again from its stored record (fresh attempts); returns its id."""
        self.producer  # connect first: a dead broker must not leave the record half-changed
        return self.publish([self.backend.reset_to_queued(task_id)], wait=True)[0]

    def requeue_stale(self, older_than: float, limit: int = 1000) -> list[str]:
        """Publishes again the tasks `queued` for more than `older_than` seconds.

        A memory-only broker loses its messages on restart while Redis keeps the
        records; this puts them back on the topic. A duplicate message is harmless:
        the claim skips a finished task and never runs one twice at once.
        """
        ids = self.backend.ids_older_than("queued", time.time() - older_than, limit)
        if not ids:
            return []
        # The topic may have gone with the broker: make sure it is there again.
        ensure_topic(self.settings, self.settings.topic, self.settings.partitions)
        self.producer
        records = self.backend.get_many(ids)
        self.backend.touch_queued([r.task_id for r in records])
        return self.publish([TaskMessage(r.task_id, r.task, tuple(r.args), r.kwargs, r.tries, r.submitted,
                                         r.time_limit) for r in records], wait=True)

    def _spec(self, spec: TaskSpec) -> TaskMessage:
        if isinstance(spec, TaskMessage):
            return spec
        if isinstance(spec, Mapping):
            return self.message(spec["task"], spec.get("args", ()), spec.get("kwargs"),
                                tries=spec.get("tries"), time_limit=spec.get("time_limit"),
                                task_id=spec.get("task-id") or spec.get("task_id"))
        name, args, *rest = spec
        return self.message(name, args, rest[0] if rest else None)

    # -- track -------------------------------------------------------------
    def status(self, task_id: str) -> TaskRecord:
        """The stored record; raises `TaskNotFound` for an unknown id."""
        return self.backend.get(task_id)

    def wait(self, task_id: str, timeout: float | None = None, poll: float = 0.02) -> TaskRecord:
        """Waits for a final status; raises `ResultTimeout` (or `TaskNotFound`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            rec = self.backend.get(task_id)
            if rec.done:
                return rec
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(task_id, timeout or 0, rec.status)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        """The task's result; raises `TaskFailed` with its error, `ResultTimeout`, `TaskNotFound`."""
        rec = self.wait(task_id, timeout)
        if rec.status == "failed":
            raise TaskFailed(task_id, rec.error or "unknown error", rec.attempts)
        return rec.result

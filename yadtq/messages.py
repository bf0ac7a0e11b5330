"""Wire formats: immutable values with `encode`/`decode` (JSON only, never pickle).

A payload that cannot be read raises `MessageError`, carrying the task id when
one could be read, never a `KeyError` from deep inside.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from kafka.partitioner.default import murmur2

from yadtq.errors import MessageError

MAX_TASK_NAME = 200


def new_task_id() -> str:
    return str(uuid.uuid4())


def key_partition(key: str, partitions: list[int]) -> int:
    """The partition of an ordering key: Kafka's default (murmur2) partitioner, so any
    Kafka client that sends the same key reaches the same partition."""
    return partitions[(murmur2(key.encode()) & 0x7FFFFFFF) % len(partitions)]


@dataclass(frozen=True)
class TaskMessage:
    """`{"task-id": "...", "task": "add", "args": [1, 2]}` plus optional fields."""

    task_id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    tries: int | None = None
    submitted_at: float | None = None
    time_limit: float | None = None
    # Ordering key: tasks with the same key go to one partition and run one at a time, in order.
    key: str | None = None

    def encode(self) -> bytes:
        return self._encoded

    @functools.cached_property
    def _encoded(self) -> bytes:
        # Cached: the client checks the size, then publishes the same bytes.
        body: dict[str, Any] = {"task-id": self.task_id, "task": self.task, "args": list(self.args)}
        if self.kwargs:
            body["kwargs"] = self.kwargs
        if self.tries is not None:
            body["tries"] = self.tries
        if self.submitted_at is not None:
            body["submitted-at"] = self.submitted_at
        if self.time_limit is not None:
            body["time-limit"] = self.time_limit
        if self.key is not None:
            body["key"] = self.key
        return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ControlMessage:
    """`{"control": "end", "id": ...}`: sent to every partition by the producer."""

    control: str
    id: str = ""

    def encode(self) -> bytes:
        return json.dumps({"control": self.control, "id": self.id}).encode()


CONTROLS = ("end",)


def decode(raw: bytes | None, max_bytes: int) -> TaskMessage | ControlMessage:
    """Read one record value from the tasks topic; raises `MessageError`."""
    if raw is None:
        raise MessageError("empty message (no value)")
    if len(raw) > max_bytes:
        raise MessageError(f"message of {len(raw)} bytes exceeds the limit of {max_bytes} bytes",
                           _sniff_id(raw[:4096]))
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MessageError(f"expected a JSON object, got {type(body).__name__}")
    if "control" in body:
        if body["control"] not in CONTROLS:
            raise MessageError(f"unknown control {body['control']!r}")
        return ControlMessage(body["control"], str(body.get("id", "")))
    return task_from_dict(body)


def task_from_dict(body: dict[str, Any]) -> TaskMessage:
    task_id = body.get("task-id", body.get("task_id"))
    if not isinstance(task_id, str) or not task_id or len(task_id) > 200:
        raise MessageError("missing or invalid 'task-id' (a non-empty string)")
    name = body.get("task")
    if not isinstance(name, str) or not name or len(name) > MAX_TASK_NAME:
        raise MessageError("missing or invalid 'task' (a task name)", task_id)
    args = body.get("args", [])
    if not isinstance(args, list):
        raise MessageError("'args' must be a JSON array", task_id)
    kwargs = body.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise MessageError("'kwargs' must be a JSON object", task_id)
    tries = body.get("tries")
    if tries is not None and (not isinstance(tries, int) or isinstance(tries, bool) or tries < 1):
        raise MessageError("'tries' must be a positive integer", task_id)
    submitted = _optional_number(body, "submitted-at", task_id)
    time_limit = _optional_number(body, "time-limit", task_id)
    key = body.get("key")
    if key is not None and (not isinstance(key, str) or not key or len(key) > 200):
        raise MessageError("'key' must be a non-empty string of at most 200 characters", task_id)
    return TaskMessage(task_id, name, tuple(args), kwargs, tries, submitted, time_limit, key)


def _optional_number(body: dict[str, Any], key: str, task_id: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise MessageError(f"{key!r} must be a non-negative number", task_id)
    return float(value)


def _sniff_id(head: bytes) -> str | None:
    """Best effort: the task id of an oversized message, from its first bytes."""
    marker = b'"task-id"'
    at = head.find(marker)
    if at < 0:
        return None
    rest = head[at + len(marker):].lstrip(b" :")
    if not rest.startswith(b'"'):
        return None
    end = rest.find(b'"', 1)
    return rest[1:end].decode(errors="replace") if end > 1 else None


@dataclass(frozen=True)
class Heartbeat:
    worker: str
    host: str
    pid: int
    incarnation: str
    state: str  # idle | busy | standby | stopping
    current_task: str | None
    done: int
    failed: int
    partitions: tuple[int, ...] = ()
    ts: float = field(default_factory=time.time)
    # The engine's view (issue 9): slots, the ids running now, and per partition
    # {"partition", "committed", "buffered", "running", "paused", "waiting": {reason: n}}.
    concurrency: int = 1
    running: tuple[str, ...] = ()
    partition_state: tuple[dict[str, Any], ...] = ()

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Heartbeat:
        try:
            body = json.loads(raw)
            body["partitions"] = tuple(body.get("partitions", ()))
            body["running"] = tuple(body.get("running", ()))
            body["partition_state"] = tuple(body.get("partition_state", ()))
            known = {f for f in cls.__dataclass_fields__}
            return cls(**{k: v for k, v in body.items() if k in known})
        except (ValueError, TypeError) as exc:
            raise MessageError(f"bad heartbeat: {exc}") from None

"""What the engine holds of one record of the tasks topic, read once when polled.

A record is triaged as soon as it is polled: a task to claim (`TaskWork`), a
control message (`ControlWork`), or a record that cannot run (`Rejected`, with
the reason). Triage is pure: it never touches Redis or Kafka, so it is unit
tested (and fuzzed) on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from yadtq.errors import MessageError, TaskError
from yadtq.task.messages import ControlMessage, TaskMessage, decode
from yadtq.task.registry import Registry


@dataclass(frozen=True)
class Record:
    """One record as the task source delivers it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # Kafka record headers (the submitter's trace context, yadtq.task.trace_context); optional.
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class TaskWork:
    message: TaskMessage
    digest: str
    key_slots: int = 1  # how many tasks of its ordering key may run at once (`@task(key_concurrency=N)`)

    @property
    def task_id(self) -> str:
        return self.message.task_id

    @property
    def order_key(self) -> str | None:
        """Tasks sharing this key start in offset order, `key_slots` (default one) at a time."""
        return self.message.key


@dataclass(frozen=True)
class ControlWork:
    message: ControlMessage


@dataclass(frozen=True)
class Rejected:
    error: str
    task_id: str | None
    task: str | None
    digest: str = ""


Work = TaskWork | ControlWork | Rejected


def triage(record: Record, registry: Registry, max_bytes: int) -> Work:
    """Reads one record; never raises (any failure to read is a `Rejected`)."""
    try:
        msg = decode(record.value, max_bytes)
    except MessageError as exc:
        return Rejected(str(exc), exc.task_id, None)
    except (RecursionError, ValueError, TypeError, OverflowError, MemoryError) as exc:  # a decoder gap: still a reject
        return Rejected(f"unreadable message: {type(exc).__name__}", None, None)
    if isinstance(msg, ControlMessage):
        return ControlWork(msg)
    digest = msg.digest
    try:
        task = registry.get(msg.task)
        task.check_args(msg.args, msg.kwargs)
    except TaskError as exc:
        return Rejected(str(exc), msg.task_id, msg.task, digest)
    return TaskWork(msg, digest, task.limits.key_concurrency or 1)

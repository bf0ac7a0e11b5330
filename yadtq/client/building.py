"""Building task messages from a caller's arguments: shared by the blocking client (`YADTQ`) and the
asyncio one (`AsyncYADTQ`), so both refuse the same calls with the same errors. Pure: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from yadtq.config import DEFAULT_QUEUE, Settings
from yadtq.errors import ConfigError, MessageError
from yadtq.task.messages import TaskMessage, new_task_id
from yadtq.task.queues import check_queue_name
from yadtq.task.registry import registry
from yadtq.task.timing import NO_TIMING, Timing

# (name, args) | (name, args, kwargs) | (name, args, kwargs, {"countdown": ...}) | {"task": ..., "args": ..., ...}
TaskSpec = Any
# Options a dict spec (and a tuple spec's fourth item) may carry beside task, args and kwargs.
SPEC_OPTIONS = ("tries", "time_limit", "key", "countdown", "eta", "expires", "result_ttl", "queue")


def validate_call(task: str, args: Sequence[Any], tries: int | None, key: str | None) -> None:
    """Raises `MessageError` for a call no message can carry."""
    if not isinstance(task, str) or not task:
        raise MessageError("task name must be a non-empty string")
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise MessageError("args must be a list")
    if tries is not None and tries < 1:
        raise MessageError("tries must be >= 1")
    if key is not None and (not isinstance(key, str) or not key or len(key) > 200):
        raise MessageError("key must be a non-empty string of at most 200 characters")


def resolve_queue(task: str, queue: str | None, announced: Callable[[str], str | None]) -> str | None:
    """Where a submit of `task` goes: `queue` when given, else the queue its `@task(queue=...)` names
    (in this process's registry, or as live workers announce it: `announced`); None: the default queue."""
    if queue is None:
        declared = registry.get(task).queue if task in registry else None
        queue = declared or announced(task)
    if queue is None or queue == DEFAULT_QUEUE:
        return None
    try:
        return check_queue_name(queue)
    except ConfigError as exc:
        raise MessageError(str(exc)) from None


def make_message(settings: Settings, task: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None, *,
                 tries: int | None, time_limit: float | None, task_id: str | None, key: str | None,
                 timing: Timing = NO_TIMING, result_ttl: float | None = None,
                 queue: str | None = None) -> TaskMessage:
    """The message of a validated call (`queue`: its named queue, None for the default one); raises
    `MessageError` when it is over the size limit."""
    m = TaskMessage(task_id or new_task_id(), task, tuple(args), dict(kwargs or {}),
                    tries or settings.tries, time.time(), time_limit, key, timing, queue, result_ttl)
    size = len(m.encode())
    if size > settings.max_message_bytes:
        raise MessageError(f"task message of {size} bytes exceeds the limit of "
                           f"{settings.max_message_bytes} bytes", m.task_id)
    return m


def spec_call(spec: TaskSpec, unchecked: bool = False) -> tuple[str, Sequence[Any], Mapping[str, Any] | None,
                                                                 dict[str, Any]]:
    """(task, args, kwargs, options of `message`) of one `submit_many` spec; raises `MessageError`
    for an unknown option."""
    if isinstance(spec, Mapping):
        return (spec["task"], spec.get("args", ()), spec.get("kwargs"),
                {"task_id": spec.get("task-id") or spec.get("task_id"),
                 "unchecked": unchecked or bool(spec.get("unchecked")),
                 **{k: spec[k] for k in SPEC_OPTIONS if spec.get(k) is not None}})
    name, args, *rest = spec
    options = rest[1] if len(rest) > 1 else {}
    unknown = set(options) - set(SPEC_OPTIONS)
    if unknown:
        raise MessageError(f"unknown task options {sorted(unknown)}; known: {', '.join(SPEC_OPTIONS)}")
    return name, args, rest[0] if rest else None, {"unchecked": unchecked, **options}

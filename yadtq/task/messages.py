"""Wire formats: immutable values with `encode`/`decode` (JSON only, never pickle).

A payload that cannot be read raises `MessageError`, carrying the task id when
one could be read, never a `KeyError` from deep inside.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from kafka.partitioner.default import murmur2

from yadtq import codec
from yadtq.errors import MessageError
from yadtq.task.queues import queue_problem
from yadtq.task.timing import NO_TIMING, Timing

MAX_TASK_NAME = 200
MAX_TASK_ID = 200
# Deeper arguments are refused at the door: every later step (the claim's JSON,
# the task's own code, the result) would otherwise meet the recursion limit.
MAX_DEPTH = 64
MAX_TRIES = 10_000
MAX_TIME_LIMIT = 366 * 86_400.0
# Bytes of an unreadable record searched for its task id.
SNIFF_BYTES = 4096

Header = tuple[str, bytes]


def new_task_id() -> str:
    return str(uuid.uuid4())


def canonical_json(value: Any) -> str:
    """One text per JSON value (sorted keys, compact, ASCII): what digests are taken of."""
    return codec.canonical(value)


def body_digest(task: str, args: Any, kwargs: Any) -> str:
    """sha1 hex of the canonical JSON of `[task, args, kwargs]`."""
    return hashlib.sha1(canonical_json([task, list(args), dict(kwargs)]).encode()).hexdigest()


def key_partition(key: str, partitions: list[int]) -> int:
    """The partition of an ordering key: Kafka's default (murmur2) partitioner, so any
    Kafka client that sends the same key reaches the same partition."""
    return partitions[int(murmur2(key.encode()) & 0x7FFFFFFF) % len(partitions)]


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
    # Not before / not after (yadtq.task.timing): fields "eta", "countdown", "expires", "expires-at".
    timing: Timing = NO_TIMING
    # Named queue (its own topic); None: the default queue.
    queue: str | None = None
    # Seconds the finished record is kept (this submit's choice; None: the task's or the farm's).
    # Kept in the record the client writes before publishing, not sent on the wire.
    result_ttl: float | None = None

    @property
    def record_key(self) -> bytes:
        """The Kafka record key: the ordering key, else the task id."""
        return (self.key or self.task_id).encode()

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
        if self.queue is not None:
            body["queue"] = self.queue
        body.update(self.timing.json_fields())
        try:
            return codec.strict_compact(body).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise MessageError(f"arguments are not strict JSON: {exc}", self.task_id) from None

    @functools.cached_property
    def digest(self) -> str:
        """What the task is, apart from its id: sha1 hex of canonical `[task, args, kwargs]`.

        Stored in the record at submit; a record that reuses the id with another
        body is foreign and must not touch the task.
        """
        return body_digest(self.task, self.args, self.kwargs)


@dataclass(frozen=True)
class ControlMessage:
    """`{"control": "end", "id": ..., "token": ...}`: sent to every partition by the producer.

    `token` is `Settings.control_token` when one is set; workers then honour
    only an `end` that carries it.
    """

    control: str
    id: str = ""
    token: str = ""

    def encode(self) -> bytes:
        body = {"control": self.control, "id": self.id}
        if self.token:
            body["token"] = self.token
        return json.dumps(body).encode()


CONTROLS = ("end",)


def decode(raw: bytes | None, max_bytes: int) -> TaskMessage | ControlMessage:
    """Reads one record value from the tasks topic.

    Any bytes at all either give a message or raise `MessageError` (with the
    task id when one is readable): the size is checked before parsing, and
    invalid UTF-8, lone surrogates, NaN/Infinity, numbers too large, nesting
    deeper than `MAX_DEPTH` and wrong field types are all refused.
    """
    if raw is None:
        raise MessageError("empty message (no value)")
    if len(raw) > max_bytes:
        raise MessageError(f"message of {len(raw)} bytes exceeds the limit of {max_bytes} bytes",
                           sniff_task_id(raw))
    try:
        body, by_orjson = codec.parse(raw, _strict_loads)
    except RecursionError:
        raise MessageError(f"JSON nested deeper than {MAX_DEPTH} levels", sniff_task_id(raw)) from None
    except ValueError as exc:  # also UnicodeDecodeError and ints past the digit limit
        raise MessageError(f"not JSON: {_short(exc)}", sniff_task_id(raw)) from None
    if not isinstance(body, dict):
        raise MessageError(f"expected a JSON object, got {type(body).__name__}")
    # What orjson read has no lone surrogate, and is no deeper than its number of brackets: the
    # walk below (the costliest part of reading a task) is needed only past that bound.
    problem = None if by_orjson and raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH else _unstorable(body)
    if problem:
        task_id = body.get("task-id", body.get("task_id"))
        raise MessageError(problem, task_id if _valid_id(task_id) else None)
    if "control" in body:
        return _control_from_dict(body)
    return task_from_dict(body)


def _control_from_dict(body: dict[str, Any]) -> ControlMessage:
    control, cid, token = body["control"], body.get("id", ""), body.get("token", "")
    if control not in CONTROLS:
        raise MessageError(f"unknown control {str(control)[:100]!r}")
    if not isinstance(cid, (str, int)) or isinstance(cid, bool) or not isinstance(token, str):
        raise MessageError("control 'id' and 'token' must be strings")
    return ControlMessage(control, str(cid)[:MAX_TASK_ID], token)


def task_from_dict(body: dict[str, Any]) -> TaskMessage:
    """A task from a parsed JSON object; raises `MessageError` (with the id when readable)."""
    task_id = body.get("task-id", body.get("task_id"))
    if not isinstance(task_id, str) or not _valid_id(task_id):
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
    if tries is not None and (not isinstance(tries, int) or isinstance(tries, bool) or not 1 <= tries <= MAX_TRIES):
        raise MessageError(f"'tries' must be an integer from 1 to {MAX_TRIES}", task_id)
    submitted = _optional_number(body, "submitted-at", task_id, math.inf)
    time_limit = _optional_number(body, "time-limit", task_id, MAX_TIME_LIMIT)
    key = body.get("key")
    if key is not None and (not isinstance(key, str) or not key or len(key) > 200):
        raise MessageError("'key' must be a non-empty string of at most 200 characters", task_id)
    queue = body.get("queue")
    if queue is not None and (problem := queue_problem(queue)):
        raise MessageError(f"'queue': {problem}", task_id)
    return TaskMessage(task_id, name, tuple(args), kwargs, tries, submitted, time_limit, key,
                       Timing.from_json(body, task_id), queue)


def _valid_id(task_id: Any) -> bool:
    return isinstance(task_id, str) and 0 < len(task_id) <= MAX_TASK_ID


def _optional_number(body: dict[str, Any], key: str, task_id: str, most: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= most:
        raise MessageError(f"{key!r} must be a number from 0 to {most:g}", task_id)
    return float(value)


def _strict_loads(raw: bytes) -> Any:
    return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _short(exc: Exception) -> str:
    return str(exc)[:200]


def _unstorable(body: Any) -> str | None:
    """Why a parsed value cannot travel on (too deep, lone surrogates), or None.

    Iterative, so a value as deep as the parser allows cannot overflow the stack here.
    """
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return "text with a lone surrogate (not valid Unicode)"
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            return f"JSON nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for k, v in value.items():
                stack.append((k, depth))
                stack.append((v, depth + 1))
        else:
            stack.extend((v, depth + 1) for v in value)
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def sniff_task_id(raw: bytes) -> str | None:
    """Best effort: the task id of an unreadable record, from its first bytes."""
    head = raw[:SNIFF_BYTES]
    for marker in (b'"task-id"', b'"task_id"'):
        at = head.find(marker)
        if at < 0:
            continue
        rest = head[at + len(marker):].lstrip(b" \t\r\n")
        if not rest.startswith(b":"):
            continue
        rest = rest[1:].lstrip(b" \t\r\n")
        if not rest.startswith(b'"'):
            continue
        end = rest.find(b'"', 1)
        if end <= 1 or b"\\" in rest[1:end]:
            continue  # escapes: not worth guessing at
        try:
            task_id = rest[1:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if _valid_id(task_id) and task_id.isprintable():
            return task_id
    return None


def dead_letter_value(raw: bytes | None, limit: int, error: str = "") -> tuple[bytes, list[Header]]:
    """The value and headers to send a rejected record to the dead-letter topic with.

    A record over `limit` bytes (the broker refuses one past about twice
    `max_message_bytes`) is cut to its first `limit` bytes; the headers say so
    and give its original size. Headers: `error` (first 1000 bytes of it),
    `size` (original bytes), `truncated` ("1" when cut).
    """
    value = raw or b""
    headers: list[Header] = [("error", error.encode("utf-8", "replace")[:1000]),
                             ("size", str(len(value)).encode())]
    if len(value) > limit:
        value = value[:limit]
        headers.append(("truncated", b"1"))
    return value, headers


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

"""Workflows as plain data: signatures, chain, group and chord (the names Celery's canvas made common).

    add.s(1, 2)                         # a signature: a task call not yet sent
    add.si(1, 2)                        # immutable: a chain does not prepend the previous result
    chain(add.s(1, 2), mul.s(10))       # mul(3, 10): each result goes first into the next step
    group(add.s(1, 1), add.s(2, 2))     # or group([...]): in parallel, result is the list in order
    chord(group(...), tsum.s())         # the callback runs once with the group's list

Every type turns into JSON (`to_dict`) and back (`from_dict`), so a workflow can be described by
a client that imports no task code (`YADTQ.signature("add", [1, 2])`, the HTTP API). The shape:

    {"type": "task", "task": "add", "args": [1, 2], "kwargs": {}, "immutable": false,
     "tries": 3, "time_limit": 10.0, "task_id": "...", "queue": "high"}      (the last four optional)
    {"type": "chain", "steps": [...]}   {"type": "group", "members": [...]}
    {"type": "chord", "header": {"type": "group", ...}, "body": {...}}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from yadtq.errors import MessageError
from yadtq.task.queues import queue_problem

# Deeper workflows are refused: the engine's Lua walks the tree recursively.
MAX_DEPTH = 32
MAX_NODES = 20_000


@dataclass(frozen=True)
class Signature:
    """One task call: name, arguments and options (tries, time_limit, task_id, queue: the named queue
    it is published to; None: its `@task(queue=...)`, else the default queue)."""

    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    immutable: bool = False
    tries: int | None = None
    time_limit: float | None = None
    task_id: str | None = None
    queue: str | None = None

    def set(self, *, tries: int | None = None, time_limit: float | None = None,
            task_id: str | None = None, queue: str | None = None) -> Signature:
        """A copy with these options (`add.s(1, 2).set(queue="high")`)."""
        return Signature(self.task, self.args, dict(self.kwargs), self.immutable, tries or self.tries,
                         time_limit or self.time_limit, task_id or self.task_id, _queue(queue) or self.queue)

    def __or__(self, other: Canvas) -> chain:
        return chain(self, other)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "task", "task": self.task, "args": list(self.args),
                               "kwargs": dict(self.kwargs), "immutable": self.immutable}
        for name in ("tries", "time_limit", "task_id", "queue"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


class chain:  # lowercase, as in the canvas vocabulary users know
    """Runs its steps one after the other; each result is the next step's first argument."""

    def __init__(self, *steps: Canvas | Iterable[Canvas]) -> None:
        self.steps: tuple[Canvas, ...] = _flatten_args(steps, "chain")

    def __or__(self, other: Canvas) -> chain:
        return chain(*self.steps, other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, chain) and self.steps == other.steps

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.steps))})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "chain", "steps": [s.to_dict() for s in self.steps]}


class group:
    """Runs its members in parallel; its result is the list of their results, in order."""

    def __init__(self, *members: Canvas | Iterable[Canvas]) -> None:
        self.members: tuple[Canvas, ...] = _flatten_args(members, "group", empty_ok=True)

    def __or__(self, other: Canvas) -> chain:
        return chain(self, other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, group) and self.members == other.members

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.members))})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "group", "members": [m.to_dict() for m in self.members]}


class chord:
    """Runs `header` (a group) and then `body` once, with the list of the header's results."""

    def __init__(self, header: group | Iterable[Canvas], body: Canvas) -> None:
        self.header = header if isinstance(header, group) else group(list(header))
        if not isinstance(body, (Signature, chain, group, chord)):
            raise MessageError(f"a chord's callback must be a signature or a workflow, not {type(body).__name__}")
        self.body = body

    def __or__(self, other: Canvas) -> chain:
        return chain(self, other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, chord) and (self.header, self.body) == (other.header, other.body)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "chord", "header": self.header.to_dict(), "body": self.body.to_dict()}


Canvas = Union[Signature, chain, group, chord]  # noqa: UP007  (a runtime alias, used in isinstance too)
CANVAS_TYPES = (Signature, chain, group, chord)


def _flatten_args(items: tuple[Any, ...], what: str, empty_ok: bool = False) -> tuple[Canvas, ...]:
    """`group(a, b)` and `group([a, b])` alike."""
    if len(items) == 1 and not isinstance(items[0], CANVAS_TYPES) and isinstance(items[0], Iterable):
        items = tuple(items[0])
    for x in items:
        if not isinstance(x, CANVAS_TYPES):
            raise MessageError(f"a {what} holds signatures (add.s(...)) or workflows, not {type(x).__name__}")
    if not items and not empty_ok:
        raise MessageError(f"a {what} needs at least one step")
    return tuple(items)


def signature(task: str, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
              immutable: bool = False, tries: int | None = None, time_limit: float | None = None,
              task_id: str | None = None, queue: str | None = None) -> Signature:
    """A signature of a task by name (for tasks the caller does not import)."""
    if not isinstance(task, str) or not task:
        raise MessageError("task name must be a non-empty string")
    if isinstance(args, (str, bytes, Mapping)):
        raise MessageError("args must be a list")
    return Signature(task, tuple(args), dict(kwargs or {}), immutable, tries, time_limit, task_id, _queue(queue))


def _queue(queue: object) -> str | None:
    """A signature's queue option: None, or a valid queue name (else `MessageError`)."""
    if queue is None:
        return None
    problem = queue_problem(queue)
    if problem:
        raise MessageError(problem)
    return str(queue)


def attach(fn: Callable[..., Any], name: str) -> None:
    """Gives a task function `.s(...)` and `.si(...)` (called by the registry)."""
    def s(*args: Any, **kwargs: Any) -> Signature:
        return Signature(name, args, kwargs)

    def si(*args: Any, **kwargs: Any) -> Signature:
        return Signature(name, args, kwargs, immutable=True)

    s.__doc__ = f"A signature of {name}(...): in a chain, the previous result comes first."
    si.__doc__ = f"An immutable signature of {name}(...): a chain passes it nothing."
    try:
        fn.s = s  # type: ignore[attr-defined]
        fn.si = si  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass  # a builtin or a bound method: it is still registered, sent by name


def from_dict(d: Any, depth: int = 0) -> Canvas:
    """Reads a workflow description (raises `MessageError` saying what is wrong)."""
    if depth > MAX_DEPTH:
        raise MessageError(f"workflow nested deeper than {MAX_DEPTH}")
    if not isinstance(d, Mapping):
        raise MessageError(f"a workflow node must be an object, not {type(d).__name__}")
    kind = d.get("type", "task" if "task" in d else None)
    if kind == "task":
        args, kwargs = d.get("args", []), d.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, Mapping):
            raise MessageError(f"task node {d.get('task')!r}: args must be a list and kwargs an object")
        tries, limit, tid = d.get("tries"), d.get("time_limit"), d.get("task_id")
        if tries is not None and (not isinstance(tries, int) or isinstance(tries, bool) or tries < 1):
            raise MessageError("tries must be an integer >= 1")
        if limit is not None and (not isinstance(limit, (int, float)) or isinstance(limit, bool)
                                  or not math.isfinite(limit) or limit <= 0):
            raise MessageError("time_limit must be a positive number")
        if tid is not None and (not isinstance(tid, str) or not tid or len(tid) > 200):
            raise MessageError("task_id must be a non-empty string of at most 200 characters")
        return signature(d.get("task"), args, kwargs, immutable=bool(d.get("immutable", False)),  # type: ignore[arg-type]
                         tries=tries, time_limit=limit, task_id=tid, queue=d.get("queue"))
    if kind == "chain":
        return chain(*[from_dict(x, depth + 1) for x in _listed(d, "steps")])
    if kind == "group":
        return group([from_dict(x, depth + 1) for x in _listed(d, "members")])
    if kind == "chord":
        header = from_dict(d.get("header"), depth + 1)
        if not isinstance(header, group):
            raise MessageError("a chord's header must be a group")
        return chord(header, from_dict(d.get("body"), depth + 1))
    raise MessageError(f"unknown workflow node type {kind!r}; one of task, chain, group, chord")


def _listed(d: Mapping[str, Any], name: str) -> list[Any]:
    got = d.get(name)
    if not isinstance(got, list):
        raise MessageError(f"a {d.get('type')} needs a list {name!r}")
    return got

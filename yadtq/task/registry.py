"""The task registry: tasks are registered and sent by name.

    from yadtq import task

    @task                       # registered as "resize"
    def resize(path: str, width: int) -> str: ...

    @task("sum", tries=5, time_limit=30, result_ttl=3600)
    def total(*xs: float) -> float: ...

    @task(retry_on=(TimeoutError, ConnectionError))   # retry only these; others fail at once
    def fetch(url: str) -> str: ...

    @task(fail_on=(ValueError,))                      # never retry these; others as usual
    def parse(text: str) -> dict: ...

Arguments are checked against the function's signature and its simple type
annotations (int, float, str, bool, list, dict) before it runs, so a wrong
call is a clear `TaskArgumentError` instead of a traceback from inside.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from yadtq.errors import ConfigError, TaskArgumentError, UnknownTask
from yadtq.task.canvas import attach as attach_signatures
from yadtq.task.limits import Limits
from yadtq.task.progress import ProgressSink, in_context, report_progress
from yadtq.task.queues import check_queue_name
from yadtq.task.quick_check import Expected, QuickCheck


@dataclass(frozen=True)
class TaskContext:
    """What a running task may ask about itself (`yadtq.current_task()`), and how it reports progress."""

    task_id: str
    name: str
    attempt: int
    worker: str
    reporter: ProgressSink | None = field(default=None, repr=False, compare=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Reports how far the task is (0..1) and what it does now; see yadtq.task.progress."""
        report_progress(self.reporter, fraction, message)


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("yadtq_task", default=None)


def current_task() -> TaskContext | None:
    """The context of the task running in this worker, or None outside a task."""
    return _current.get()


@dataclass(frozen=True)
class Task:
    name: str
    fn: Callable[..., Any]
    tries: int | None = None
    time_limit: float | None = None
    signature: inspect.Signature = field(repr=False, default=None)  # type: ignore[assignment]
    limits: Limits = field(default_factory=Limits)  # rate and concurrency limits (yadtq.task.limits)
    # Which errors are worth a retry (the worker's RetryRules policy): empty = any error.
    retry_on: tuple[type[BaseException], ...] = ()
    fail_on: tuple[type[BaseException], ...] = ()
    queue: str | None = None  # named queue its submits go to (None: the default queue)
    result_ttl: float | None = None  # seconds its finished records are kept (None: the farm's YADTQ_RESULT_TTL)

    def check_args(self, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any]) -> None:
        """Raises `TaskArgumentError` when the call does not fit the function."""
        if not kwargs and (quick := self._quick_check) is not None and quick.fits(args):
            return
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentError(f"{self.name}: {exc}") from None
        for pname, value in bound.arguments.items():
            param = self.signature.parameters[pname]
            expected = _SIMPLE_TYPES.get(param.annotation if isinstance(param.annotation, str)
                                         else getattr(param.annotation, "__name__", ""))
            if expected is None:
                continue
            values = value if param.kind is param.VAR_POSITIONAL else (
                value.values() if param.kind is param.VAR_KEYWORD else (value,))
            for v in values:
                if not _is_instance(v, expected):
                    wanted = param.annotation if isinstance(param.annotation, str) else param.annotation.__name__
                    raise TaskArgumentError(
                        f"{self.name}: argument {pname!r} must be {wanted}, got {type(v).__name__} {v!r}")

    @functools.cached_property
    def is_async(self) -> bool:
        """Whether `fn` is a coroutine function (asked twice per run: kept, as `fn` never changes)."""
        return inspect.iscoroutinefunction(self.fn)

    @functools.cached_property
    def _quick_check(self) -> QuickCheck | None:
        return QuickCheck.of(self.signature, _expected)

    def run(self, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any], context: TaskContext) -> Any:
        if self.is_async:  # its body runs later, when awaited: set the context there
            return in_context(_current, context, self.fn(*args, **kwargs))
        token = _current.set(context)
        try:
            return self.fn(*args, **kwargs)
        finally:
            _current.reset(token)


_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
    "list": (list,), "dict": (dict,),
}


ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def _exception_types(task_name: str, option: str, given: ExceptionTypes | None) -> tuple[type[BaseException], ...]:
    """`retry_on`/`fail_on` as a tuple of exception classes (one class alone is accepted too)."""
    if given is None:
        return ()
    types = given if isinstance(given, tuple) else (given,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ConfigError(f"task {task_name!r}: {option} takes exception classes, got {t!r}")
    return types


def _expected(param: inspect.Parameter) -> Expected:
    return _SIMPLE_TYPES.get(param.annotation if isinstance(param.annotation, str)
                             else getattr(param.annotation, "__name__", ""))


def _is_instance(value: Any, expected: tuple[type, ...]) -> bool:
    # JSON has no separate bool; True must not pass as a number.
    if isinstance(value, bool) and bool not in expected:
        return False
    return isinstance(value, expected)


class Registry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def task(self, name: str | Callable[..., Any] | None = None, *, tries: int | None = None,
             time_limit: float | None = None, rate_limit: str | None = None, max_concurrency: int | None = None,
             key_concurrency: int | None = None, retry_on: ExceptionTypes | None = None,
             fail_on: ExceptionTypes | None = None, queue: str | None = None,
             result_ttl: float | None = None) -> Any:
        """Decorator: `@registry.task`, `@registry.task("name", tries=5, time_limit=10)`;
        a named queue: `queue="email"`; limits: `rate_limit="100/s"`, `max_concurrency=3`,
        `key_concurrency=2` (yadtq.task.limits);
        which errors are worth a retry: `retry_on=(TimeoutError,)`, `fail_on=(ValueError,)`."""
        if callable(name):
            return self.register(name)

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            return self.register(fn, name, tries=tries, time_limit=time_limit, rate_limit=rate_limit,
                                 max_concurrency=max_concurrency, key_concurrency=key_concurrency,
                                 retry_on=retry_on, fail_on=fail_on, queue=queue, result_ttl=result_ttl)
        return decorate

    def register(self, fn: Callable[..., Any], name: str | None = None, *, tries: int | None = None,
                 time_limit: float | None = None, rate_limit: str | None = None, max_concurrency: int | None = None,
                 key_concurrency: int | None = None, retry_on: ExceptionTypes | None = None,
                 fail_on: ExceptionTypes | None = None, queue: str | None = None,
                 result_ttl: float | None = None) -> Callable[..., Any]:
        task_name = name or fn.__name__
        try:
            limits = Limits(rate_limit, max_concurrency, key_concurrency)
        except ConfigError as exc:
            raise ConfigError(f"task {task_name!r}: {exc}") from None
        if tries is not None and tries < 1:
            raise ConfigError(f"task {task_name!r}: tries must be >= 1")
        if time_limit is not None and time_limit <= 0:
            raise ConfigError(f"task {task_name!r}: time_limit must be positive")
        if queue is not None:
            check_queue_name(queue)
        if result_ttl is not None and not 0 <= result_ttl < float("inf"):
            raise ConfigError(f"task {task_name!r}: result_ttl must be seconds >= 0 (0 keeps its results forever)")
        existing = self._tasks.get(task_name)
        if existing is not None and existing.fn is not fn:
            raise ConfigError(f"task {task_name!r} is registered twice")
        self._tasks[task_name] = Task(task_name, fn, tries, time_limit, inspect.signature(fn), limits,
                                      _exception_types(task_name, "retry_on", retry_on),
                                      _exception_types(task_name, "fail_on", fail_on), queue,
                                      result_ttl=result_ttl)
        attach_signatures(fn, task_name)  # add.s(1, 2), add.si(1, 2): see yadtq.task.canvas
        return fn

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(name) from None

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def describe(self, name: str) -> list[tuple[str, str]]:
        """(parameter, annotation) pairs: what the dashboard's form asks for."""
        out = []
        for p in self.get(name).signature.parameters.values():
            ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
            prefix = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
            out.append((prefix + p.name, "" if ann == "_empty" else ann))
        return out


registry = Registry()
task = registry.task

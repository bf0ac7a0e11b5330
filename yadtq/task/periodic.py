"""Periodic tasks: `@periodic` above `@task`, and the `ScheduleSpec` every way of adding a schedule makes.

    from yadtq import periodic, task

    @periodic(every=10)                          # every 10 s (on multiples of 10 s, UTC)
    @task
    def heartbeat_report() -> None: ...

    @periodic(cron="*/5 * * * *", args=["eu"], catch_up="skip", name="sync-eu")
    @task("sync")
    def sync(region: str) -> None: ...

A decorated schedule is only declared here (`declared()`); a worker that imports the module
registers it in Redis when it starts, and from then on every scheduler fires it (the worker's
`Schedules` policy, the monitor). Schedules added at run time (`YADTQ.add_schedule`, the CLI,
the API) make the same `ScheduleSpec`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from yadtq.errors import ConfigError
from yadtq.task import slots
from yadtq.task.registry import Registry, registry

F = TypeVar("F", bound=Callable[..., Any])
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule: which task, with which arguments, when (`every` seconds xor `cron`), and what
    to do with a slot missed while nothing ran (`catch_up`: "once" fires it late, "skip" does not)."""

    name: str
    task: str
    every: int | None = None
    cron: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    catch_up: str = "once"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ConfigError(f"schedule name {self.name!r}: 1-100 letters, digits or _.:- (not first)")
        if not isinstance(self.task, str) or not self.task:
            raise ConfigError(f"schedule {self.name!r}: task must be a non-empty name")
        if (self.every is None) == (self.cron is None):
            raise ConfigError(f"schedule {self.name!r}: give exactly one of every= or cron=")
        if self.every is not None:
            every = self.every.total_seconds() if isinstance(self.every, timedelta) else self.every
            if isinstance(every, bool) or not isinstance(every, (int, float)) or every < 1 or every != int(every):
                raise ConfigError(f"schedule {self.name!r}: every must be a whole number of seconds >= 1")
            object.__setattr__(self, "every", int(every))
        else:
            object.__setattr__(self, "cron", slots.check_cron(str(self.cron)))
        if self.catch_up not in slots.CATCH_UP:
            raise ConfigError(f"schedule {self.name!r}: catch_up must be one of {', '.join(slots.CATCH_UP)}")
        if isinstance(self.args, (str, bytes)) or not isinstance(self.args, Sequence):
            raise ConfigError(f"schedule {self.name!r}: args must be a list")
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"schedule {self.name!r}: kwargs must be a mapping")
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        try:
            self.definition()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"schedule {self.name!r}: arguments are not strict JSON: {exc}") from None

    @property
    def when(self) -> str:
        """`every 10s` or `cron */5 * * * *`: how the schedule reads in a listing."""
        return f"every {self.every}s" if self.every is not None else f"cron {self.cron}"

    def definition(self) -> str:
        """Canonical JSON of everything but the name: what Redis stores and compares."""
        return json.dumps({"task": self.task, "every": self.every, "cron": self.cron, "args": list(self.args),
                           "kwargs": self.kwargs, "catch_up": self.catch_up},
                          sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_definition(cls, name: str, definition: str) -> ScheduleSpec:
        d = json.loads(definition)
        return cls(name, d["task"], d.get("every"), d.get("cron"), tuple(d.get("args") or ()),
                   dict(d.get("kwargs") or {}), d.get("catch_up", "once"))

    def slot_at(self, now: float) -> float:
        return slots.slot_at(now, every=self.every, cron=self.cron)

    def next_after(self, t: float) -> float:
        return slots.next_after(t, every=self.every, cron=self.cron)

    def decide(self, now: float, last: float) -> slots.Decision:
        return slots.decide(now, last, self.catch_up, every=self.every, cron=self.cron)


class Declared:
    """The schedules `@periodic` declared in this process, by name."""

    def __init__(self) -> None:
        self._specs: dict[str, ScheduleSpec] = {}

    def add(self, spec: ScheduleSpec) -> None:
        existing = self._specs.get(spec.name)
        if existing is not None and existing != spec:
            raise ConfigError(f"schedule {spec.name!r} is declared twice; give each @periodic its own name=")
        self._specs[spec.name] = spec

    def specs(self) -> list[ScheduleSpec]:
        return list(self._specs.values())


_declared = Declared()


def declared() -> list[ScheduleSpec]:
    """Every schedule `@periodic` declared in this process (what a worker registers when it starts)."""
    return _declared.specs()


def periodic(*, every: int | float | timedelta | None = None, cron: str | None = None,
             args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, catch_up: str = "once",
             name: str | None = None, tasks: Registry | None = None) -> Callable[[F], F]:
    """Runs the task below it on a schedule: `every` seconds, or at the times of a `cron` expression (UTC).

    Place it above `@task(...)`. `args`/`kwargs` are the call's arguments; `name` names the schedule
    (default: the task's name); `catch_up` says what becomes of a slot missed while nothing ran:
    "once" (fired once, late; several missed slots fire once together) or "skip". Raises `ConfigError`.
    """
    book = tasks or registry

    def decorate(fn: F) -> F:
        task_name = next((t.name for t in book if t.fn is fn), None)
        if task_name is None:
            raise ConfigError(f"@periodic on {getattr(fn, '__name__', fn)!r}: place it above @task(...)")
        _declared.add(ScheduleSpec(name or task_name, task_name, every, cron,  # type: ignore[arg-type]
                                   tuple(args), dict(kwargs or {}), catch_up))
        return fn
    return decorate

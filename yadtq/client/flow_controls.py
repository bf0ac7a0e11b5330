"""Run-time controls of the flow of tasks, part of `YADTQ`'s API: periodic schedules (fired by
every worker and the monitor; yadtq.store.schedules) and farm-wide limits (judged in the claim
step; yadtq.store.limits). A mixin of YADTQ, kept apart so the client class stays one concept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from yadtq.client.edge_check import EdgeCheck
from yadtq.config import Settings
from yadtq.store.connection import RedisClient
from yadtq.store.limits import UNSET, LimitStore
from yadtq.store.schedules import ScheduleState, ScheduleStore
from yadtq.task.periodic import ScheduleSpec


class FlowControls:
    redis: RedisClient
    settings: Settings
    edge: EdgeCheck

    # -- periodic schedules (yadtq.store.schedules; every worker and the monitor fire them) ----------
    def add_schedule(self, name: str, task: str, *, every: int | None = None, cron: str | None = None,
                     args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, catch_up: str = "once",
                     unchecked: bool = False) -> ScheduleState:
        """Adds (or replaces, keeping its last run) schedule `name`: `task` every `every` seconds or at the
        times of `cron` (UTC). Raises `ConfigError` for a bad schedule, `SubmissionRefused` for a call no
        live worker would run (unless `unchecked`)."""
        spec = ScheduleSpec(name, task, every, cron, tuple(args), dict(kwargs or {}), catch_up)
        if not unchecked:
            self.edge.check(task, spec.args, spec.kwargs)
        store = ScheduleStore(self.redis, self.settings)
        store.define(spec)
        state = store.get(name)
        assert state is not None
        return state

    def remove_schedule(self, name: str) -> bool:
        """Removes schedule `name` (False: there was none); tasks it fired already are kept."""
        return ScheduleStore(self.redis, self.settings).remove(name)

    def schedules(self) -> list[ScheduleState]:
        """Every schedule with its next and last run (Redis time), by name."""
        return ScheduleStore(self.redis, self.settings).states()

    def set_limit(self, task: str, *, rate_limit: Any = UNSET, max_concurrency: Any = UNSET,
                  reset: bool = False) -> dict[str, Any]:
        """Sets a task name's farm-wide limits at run time, over its decorator's: `rate_limit="10/s"`
        (also /m, /h), `max_concurrency=3`; None means no limit; an argument not given stays as it is;
        `reset=True` first drops every run-time limit (the decorator's apply again). Returns the task's
        limits now (as `limits()` rows). Applies from the next claim on every worker."""
        store = LimitStore(self.redis, self.settings)
        if reset:
            store.reset(task)
        return store.set(task, rate_limit=rate_limit, max_concurrency=max_concurrency)

    def limits(self) -> list[dict[str, Any]]:
        """Every task name with limits: rate_limit, max_concurrency, key_concurrency, where each comes
        from ("code": a worker's decorator; "set": at run time), and `running` (counted runs now)."""
        return LimitStore(self.redis, self.settings).all()

"""Rate and concurrency limits in Redis: what the claim step obeys, and what the CLI and API show.

One hash (`Keys.limits`) holds per task name two JSON fields: `code:<task>`, written by
each worker that imports the task from its decorator, and `set:<task>`, written at run time
(`YADTQ.set_limit`, `yadtq limits set`, the API), which wins field by field. A field set to
null at run time means "no limit", over the decorator's. The claim step (lua/step.lua)
reads both on every claim, so a change applies to the next claim on every worker. On a Redis
Cluster the hash and the limits' state sit on the cluster-wide slot, where a worker's step asks
before it claims (yadtq.store.cluster_limits); a change applies within a second there.
A change drops the name's booked starts (lua/step.lua `over_limit`): tasks already waiting
in Redis keep their booked start, new ones are no longer booked behind them at the old rate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from yadtq.config import Settings
from yadtq.store.connection import RedisClient
from yadtq.store.keyspace import base_keys
from yadtq.task.limits import check_count, parse_rate, stored_form
from yadtq.task.registry import Task


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave as it is" in `set` (None means "no limit")
FIELDS = ("rate_limit", "max_concurrency", "key_concurrency")


class LimitStore:
    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        # On a cluster: the cluster-wide slot, where yadtq.store.cluster_limits judges them.
        self.keys = base_keys(settings)

    def register(self, tasks: Iterable[Task]) -> None:
        """A worker's decorators: each task's limits as `code:` (a task without limits has its entry removed)."""
        pipe = self.r.pipeline(transaction=False)
        for t in tasks:
            if t.limits.any:
                pipe.hset(self.keys.limits, f"code:{t.name}", json.dumps(stored_form(t.limits.as_dict())))
            else:
                pipe.hdel(self.keys.limits, f"code:{t.name}")
        pipe.execute()

    def set(self, task: str, *, rate_limit: Any = UNSET, max_concurrency: Any = UNSET) -> dict[str, Any]:
        """Sets limits of `task` at run time (None: no limit, over the decorator's; UNSET: unchanged);
        returns the task's limits as `get` shows them. Raises ConfigError for a malformed value."""
        given: dict[str, Any] = {}
        if rate_limit is not UNSET:
            if rate_limit is not None:
                parse_rate(rate_limit)
            given["rate_limit"] = rate_limit
        if max_concurrency is not UNSET:
            given["max_concurrency"] = check_count("max_concurrency", max_concurrency)
        if given:
            raw = self.r.hget(self.keys.limits, f"set:{task}")
            current = json.loads(raw) if raw else {}
            current.update(stored_form(given))
            self.r.hset(self.keys.limits, f"set:{task}", json.dumps(current))
            self.r.delete(self.keys.limit_booked(task), self.keys.limit_started(task))
        return self.get(task)

    def reset(self, task: str) -> dict[str, Any]:
        """Drops the run-time limits of `task`: its decorator's apply again."""
        self.r.hdel(self.keys.limits, f"set:{task}")
        self.r.delete(self.keys.limit_booked(task), self.keys.limit_started(task))
        return self.get(task)

    def get(self, task: str) -> dict[str, Any]:
        code, runtime = self.r.hmget(self.keys.limits, [f"code:{task}", f"set:{task}"])
        return self._describe(task, code, runtime)

    def all(self) -> list[dict[str, Any]]:
        """Every task name with limits, by name: the effective limits, where each comes from, and how
        many runs count against its max_concurrency now."""
        raw: dict[str, str] = self.r.hgetall(self.keys.limits)  # type: ignore[assignment]  # decoded replies
        names = sorted({f.split(":", 1)[1] for f in raw})
        return [self._describe(n, raw.get(f"code:{n}"), raw.get(f"set:{n}")) for n in names]

    def _describe(self, task: str, code_raw: Any, set_raw: Any) -> dict[str, Any]:
        code = json.loads(code_raw) if code_raw else {}
        runtime = json.loads(set_raw) if set_raw else {}
        out: dict[str, Any] = {"task": task}
        for f in FIELDS:
            out[f] = runtime[f] if f in runtime else code.get(f)
            out[f"{f}_from"] = "set" if f in runtime else "code" if f in code else None
        if out["max_concurrency"] is not None:
            self.r.zremrangebyscore(self.keys.limit_running(task), "-inf", _redis_now(self.r))
        out["running"] = int(self.r.zcard(self.keys.limit_running(task)))
        return out


def _redis_now(client: RedisClient) -> float:
    sec, usec = client.time()
    return float(sec) + usec / 1_000_000

"""Validation at the edge: a submission is checked against what live workers serve, before publishing.

The rule (the same for the client, the CLI and the API):

* no live worker has announced its tasks yet: everything passes (nothing to check against);
* a task no live worker serves is refused, with "did you mean" when a served name is close;
* a call that fits no signature announced for its task is refused with that signature
  (wrong argument count, unknown keyword, or a value of the wrong simple type);
* `unchecked` skips both checks, for tasks only some future worker will serve.

What workers serve is read from Redis (`yadtq.store.served`) at most once per `ttl` seconds,
so bulk submits cost one read per second, not one per task.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from yadtq.errors import SubmissionRefused, TaskArgumentError
from yadtq.store.connection import RedisClient
from yadtq.store.keys import Keys
from yadtq.store.served import live_served
from yadtq.task.registry import Task
from yadtq.task.signatures import check_call, compile_spec, signature_text


class EdgeCheck:
    # `client` None: the caller reads what is served itself and hands it over with `update`
    # when `due` (the asyncio client).
    def __init__(self, client: RedisClient | None, keys: Keys, ttl: float = 1.0) -> None:
        self.client, self.keys, self.ttl = client, keys, ttl
        self._read_at = -float("inf")
        self._served: dict[str, list[dict[str, Any]]] = {}
        self._compiled: dict[str, list[Task | None]] = {}

    def served(self) -> dict[str, list[dict[str, Any]]]:
        """task name -> the distinct specs live workers announced for it (cached `ttl` seconds)."""
        if self.client is not None and self.due():
            self.update(live_served(self.client, self.keys))
        return self._served

    def due(self) -> bool:
        """True when what is served should be read again."""
        return time.monotonic() - self._read_at >= self.ttl

    def update(self, live: Mapping[str, Mapping[str, Any]]) -> None:
        """Takes what live workers serve (`yadtq.store.served.live_served`: worker -> {task: spec})."""
        by_task: dict[str, list[dict[str, Any]]] = {}
        for tasks in live.values():
            for name, spec in tasks.items():
                if spec not in by_task.setdefault(name, []):
                    by_task[name].append(spec)
        if by_task != self._served:  # signatures are rebuilt only when the announcements change
            self._compiled = {name: [compile_spec(spec) for spec in specs] for name, specs in by_task.items()}
        self._served, self._read_at = by_task, time.monotonic()

    def queue_of(self, task: str) -> str | None:
        """The queue live workers announce for `task` (its `@task(queue=...)`), or None."""
        for spec in self.served().get(task, []):
            if isinstance(spec.get("queue"), str):
                return str(spec["queue"])
        return None

    def check(self, task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raises `SubmissionRefused` for a call no live worker would run."""
        served = self.served()
        if not served:
            return
        specs = served.get(task)
        if specs is None:
            close = difflib.get_close_matches(task, list(served), n=1, cutoff=0.6)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            raise SubmissionRefused(f"no live worker serves task {task!r}{guess} "
                                    f"(served: {', '.join(sorted(served))})")
        reasons = []
        for spec, compiled in zip(specs, self._compiled[task], strict=True):
            try:
                check_call(task, spec, args, kwargs, compiled)
                return
            except TaskArgumentError as exc:
                reasons.append(str(exc))
        if len(reasons) == 1:
            raise SubmissionRefused(f"bad arguments for {reasons[0]}")
        raise SubmissionRefused(f"the arguments fit no signature live workers serve: "
                                f"{'; '.join(reasons)}")


def describe(served: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """`add(a: float, b: float)`, ... : what live workers serve, one signature per line."""
    return [signature_text(name, spec) for name in sorted(served) for spec in served[name]]

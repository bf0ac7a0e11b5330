"""The claim pipeline: the engine's typed contract with Redis.

Every step is one Lua script in yadtq/store/lua/ (its header names KEYS and ARGV);
verdicts and outcomes are decoded here, next to the calls, into dataclasses,
so the rest of the engine never reads positional lists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from yadtq.config import Settings
from yadtq.store.keys import Keys
from yadtq.store.scripts import load
from yadtq.task.messages import TaskMessage
from yadtq.worker.records import TaskWork


# -- verdicts of a claim ---------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """Claimed: run it under `fence` until `lease_until` (Redis time) unless renewed."""

    fence: str
    attempt: int
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    tries: int | None
    time_limit: float | None
    failures: int
    lease_until: float
    lost_runs: int = 0  # earlier runs cut off by a worker's death: this run goes alone in its worker


@dataclass(frozen=True)
class Done:
    """Finished already (success, failed or cancelled): skip the record."""

    status: str


@dataclass(frozen=True)
class Busy:
    """Another live worker holds it until `lease_until`: wait for its outcome or its lease to lapse."""

    lease_until: float


@dataclass(frozen=True)
class Parked:
    """A retry waiting in Redis until `due`; it is published again then, so this record is dealt with."""

    due: float


@dataclass(frozen=True)
class Quarantined:
    """Its workers died under it too often: failed without running."""

    error: str


@dataclass(frozen=True)
class Foreign:
    """The record reuses the id of another task: never touch that task."""

    reason: str


Verdict = Run | Done | Busy | Parked | Quarantined | Foreign


@dataclass(frozen=True)
class Outcome:
    """What to store for one finished attempt. `park` > 0 parks a retry in Redis for that long."""

    task_id: str
    fence: str
    status: str  # success | retry | failed
    result_json: str = "null"
    error: str = ""
    park: float = 0.0


@dataclass(frozen=True)
class Claim:
    work: TaskWork
    partition: int
    offset: int


@dataclass(frozen=True)
class DueRetry:
    """A parked retry taken for publishing; confirm with `untake` once it is on the topic."""

    message: TaskMessage
    armed: str


def _verdict(raw: list[Any]) -> Verdict:
    kind = raw[0]
    if kind == "run":
        _, fence, attempts, task, args, kwargs, tries, limit, failures, lease_until, lost = raw
        return Run(str(fence), int(attempts), task, json.loads(args or "[]"), json.loads(kwargs or "{}"),
                   int(tries) if tries else None, float(limit) if limit else None, int(failures or 0),
                   float(lease_until), int(lost or 0))
    if kind == "done":
        return Done(raw[1])
    if kind == "busy":
        return Busy(float(raw[1]))
    if kind == "parked":
        return Parked(float(raw[1]))
    if kind == "quarantined":
        return Quarantined(raw[1])
    if kind == "foreign":
        return Foreign(raw[1])
    raise ValueError(f"unknown claim verdict {raw!r}")


class ClaimPipeline:
    """Claim, complete, renew, confirm, release, and the parked retries, for one worker incarnation."""

    def __init__(self, client: redis.Redis, settings: Settings, worker: str, incarnation: str) -> None:
        self.r = client
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.worker = worker
        self.incarnation = incarnation
        self._step = client.register_script(load("step"))
        self._renew = client.register_script(load("renew"))
        self._confirm = client.register_script(load("confirm"))
        self._release = client.register_script(load("release"))
        self._take_due = client.register_script(load("take_due"))
        self._untake = client.register_script(load("untake"))
        k = self.keys
        self._fixed = [k.status("queued"), k.status("processing"), k.status("success"), k.status("failed"),
                       k.done_by, k.failed_by, k.retries]

    def step(self, outcomes: Sequence[Outcome], claims: Sequence[Claim]) -> tuple[list[bool], list[Verdict]]:
        """Stores `outcomes` (True: stored; False: fenced, the claim was lost) and claims `claims`.

        Sending the same step again after a lost connection is safe: an outcome
        already stored reads back as stored, a claim already made as the same claim.
        """
        s = self.settings
        keys = list(self._fixed)
        args: list[Any] = [self.worker, self.incarnation, s.lease, int(s.result_ttl), len(outcomes), s.max_lost_runs]
        for o in outcomes:
            keys += [self.keys.task(o.task_id), self.keys.events(o.task_id)]
            args += [o.task_id, o.fence, o.status, o.result_json, o.error, o.park]
        for c in claims:
            m = c.work.message
            keys += [self.keys.task(m.task_id), self.keys.events(m.task_id), self.keys.withdrawn(m.task_id)]
            args += [m.task_id, m.task, json.dumps(list(m.args)), json.dumps(m.kwargs), m.tries or s.tries,
                     m.time_limit or "", m.submitted_at or "", c.partition, c.offset, c.work.digest, m.key or ""]
        reply = self._step(keys=keys, args=args)
        stored = [r == "ok" for r in reply[:len(outcomes)]]
        return stored, [_verdict(r) for r in reply[len(outcomes):]]

    def renew(self, claims: Sequence[tuple[str, str]]) -> list[bool]:
        """Extends the leases of (task id, fence) claims; False where the claim was lost."""
        if not claims:
            return []
        reply = self._renew(keys=[self.keys.task(t) for t, _ in claims],
                            args=[self.settings.lease, self.incarnation, *(f for _, f in claims)])
        return [bool(x) for x in reply]

    def confirm(self, task_id: str, fence: str) -> bool:
        """True if the claim is still current and unexpired (its lease is extended)."""
        return bool(self._confirm(keys=[self.keys.task(task_id)], args=[fence, self.incarnation, self.settings.lease]))

    def release(self, task_id: str, fence: str, *, started: bool) -> bool:
        k = self.keys
        return bool(self._release(keys=[k.task(task_id), k.status("processing"), k.status("queued"),
                                        k.events(task_id)], args=[fence, task_id, "0" if started else "1"]))

    def take_due(self, limit: int = 200, hold: float = 30.0) -> list[DueRetry]:
        """Parked retries that are due, re-armed `hold` seconds ahead until `untake` confirms them."""
        ids = [str(i) for i in self.r.zrangebyscore(self.keys.retries, "-inf", "+inf", start=0, num=limit)]
        if not ids:
            return []
        got = self._take_due(keys=[self.keys.retries, self.keys.broker_epoch, *(self.keys.task(i) for i in ids)],
                             args=[hold, *ids])
        out = []
        for tid, armed, task, args, kwargs, tries, limit_s, submitted, key in got:
            msg = TaskMessage(tid, task, tuple(json.loads(args)), json.loads(kwargs), int(tries) if tries else None,
                              float(submitted) if submitted else None, float(limit_s) if limit_s else None,
                              key or None)
            out.append(DueRetry(msg, armed))
        return out

    def untake(self, taken: Sequence[DueRetry]) -> None:
        if taken:
            self._untake(keys=[self.keys.retries], args=[x for d in taken for x in (d.message.task_id, d.armed)])

    def next_due(self) -> float | None:
        """Redis time of the earliest parked retry."""
        got = self.r.zrange(self.keys.retries, 0, 0, withscores=True)
        return float(got[0][1]) if got else None

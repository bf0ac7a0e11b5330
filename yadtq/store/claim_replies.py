"""Typed replies of the worker's scripts: the step's verdicts, renewals, and the parked retries taken.

`step.lua` answers one 'ok' | 'fenced' per outcome, then one verdict list per
claim (its header lists the shapes); `StepReply.decode` turns them into the
dataclasses below, so the engine never reads a positional list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from yadtq.task.messages import TaskMessage

# The `status` of a Done verdict for a submit that failed and was undone: its message must not run.
WITHDRAWN = "withdrawn"


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
    """Finished already (a final Status, or WITHDRAWN): skip the record."""

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
class Early:
    """A delayed task published ahead of its `eta` (Redis time; `now` is Redis time at the claim):
    hold it and claim it again then."""

    eta: float
    now: float
    reason: str = ""  # RATE: a task over its rate, booked to start at `eta`


@dataclass(frozen=True)
class Quarantined:
    """Its workers died under it too often: failed without running."""

    error: str


@dataclass(frozen=True)
class Foreign:
    """The record reuses the id of another task: never touch that task."""

    reason: str


@dataclass(frozen=True)
class Limited:
    """Over its task name's rate or concurrency limit (`reason`): nothing was changed; claim it again
    in `delay` seconds (a rate's next start, or a short wait for a running one to end)."""

    delay: float
    reason: str  # RATE | CONCURRENCY


RATE, CONCURRENCY = "rate", "concurrency"

Verdict = Run | Done | Busy | Parked | Early | Quarantined | Foreign | Limited


def decode_verdict(raw: list[Any]) -> Verdict:
    """One claim's verdict list from step.lua."""
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
    if kind == "early":
        return Early(float(raw[1]), float(raw[2]), raw[3] if len(raw) > 3 else "")
    if kind == "quarantined":
        return Quarantined(raw[1])
    if kind == "foreign":
        return Foreign(raw[1])
    if kind == "limited":
        return Limited(float(raw[1]), raw[2])
    raise ValueError(f"unknown claim verdict {raw!r}")


@dataclass(frozen=True)
class StepReply:
    """step.lua: per outcome, True when stored (False: fenced, the claim was lost); per claim, a verdict."""

    stored: list[bool]
    verdicts: list[Verdict]

    @classmethod
    def decode(cls, raw: list[Any], outcomes: int) -> StepReply:
        return cls([r == "ok" for r in raw[:outcomes]], [decode_verdict(r) for r in raw[outcomes:]])


def decode_renewals(raw: list[Any]) -> list[bool]:
    """renew.lua: one 1 (renewed, or cancelled under this claim) or 0 (claim lost) per claim."""
    return [bool(x) for x in raw]


@dataclass(frozen=True)
class DueRetry:
    """A parked retry taken for publishing; confirm with `untake` once it is on the topic."""

    message: TaskMessage
    armed: str

    @classmethod
    def decode_all(cls, raw: list[Any]) -> list[DueRetry]:
        """take_due.lua: per taken task {id, armed score, task, args, kwargs, tries, time_limit, submitted, key,
        queue}."""
        out = []
        for tid, armed, task, args, kwargs, tries, limit_s, submitted, key, *rest in raw:
            queue = rest[0] if rest else ""
            msg = TaskMessage(tid, task, tuple(json.loads(args)), json.loads(kwargs), int(tries) if tries else None,
                              float(submitted) if submitted else None, float(limit_s) if limit_s else None,
                              key or None, queue=queue or None)
            out.append(cls(msg, armed))
        return out

"""Slot arithmetic of periodic schedules: pure functions of (schedule, time), no clock of their own.

A schedule's slots are the moments it is due, in epoch seconds (UTC):

* `every=N`: the multiples of N seconds since the Unix epoch (`every=3600` fires on the hour),
  so every process computes the same slots without agreeing on a start;
* `cron="*/5 * * * *"`: the cron expression's times, in UTC (croniter).

A scheduler asks `decide` what to do with a schedule whose last slot is `last`, at Redis time
`now`: at most one slot fires per decision (missed slots are coalesced), and a slot found more
than `grace_for` late counts as missed: `catch_up="once"` fires it all the same, `"skip"` lets it
go and waits for the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from croniter import croniter

from yadtq.errors import ConfigError

CatchUp = Literal["once", "skip"]
CATCH_UP: tuple[str, ...] = ("once", "skip")
# A slot is late once noticed more than half its period after its time, within these bounds.
MIN_GRACE, MAX_GRACE = 1.0, 60.0


def check_cron(expr: str) -> str:
    """The expression, stripped; `ConfigError` when croniter cannot read it or it has no next
    and previous time (`0 0 31 2 *`)."""
    expr = expr.strip() if isinstance(expr, str) else expr
    try:
        if not isinstance(expr, str) or not croniter.is_valid(expr):
            raise ValueError("not valid")
        now = datetime.now(UTC)
        croniter(expr, now).get_next(float)
        croniter(expr, now).get_prev(float)
    except (ValueError, TypeError, OverflowError):  # croniter's errors are ValueErrors
        raise ConfigError(f"cron {expr!r} is not a valid cron expression (e.g. '*/5 * * * *')") from None
    return expr


def slot_at(now: float, *, every: int | None = None, cron: str | None = None) -> float:
    """The latest slot at or before `now`."""
    if every is not None:
        return float(math.floor(now / every) * every)
    assert cron is not None
    # croniter's get_prev is strictly before its start: a slot exactly at `now` is the one after that.
    prev = float(croniter(cron, datetime.fromtimestamp(now, UTC)).get_prev(float))
    following = next_after(prev, cron=cron)
    return following if following <= now else prev


def next_after(t: float, *, every: int | None = None, cron: str | None = None) -> float:
    """The first slot strictly after `t`."""
    if every is not None:
        return float((math.floor(t / every) + 1) * every)
    assert cron is not None
    return float(croniter(cron, datetime.fromtimestamp(t, UTC)).get_next(float))


def grace_for(slot: float, following: float) -> float:
    """How late a slot may be noticed and still count as on time: half its period, 1 s to 60 s."""
    return min(MAX_GRACE, max(MIN_GRACE, (following - slot) / 2))


@dataclass(frozen=True)
class Decision:
    """What a scheduler does with one schedule now.

    `action`: "fire" (record and publish `slot`), "skip" (mark `slot` passed without a task:
    missed, and the schedule says skip), or "wait" (nothing is due: only `next_due` moves).
    `next_due`: when to look again (the slot after `slot`, or after `last`)."""

    action: Literal["fire", "skip", "wait"]
    slot: float | None
    next_due: float
    late: float = 0.0  # seconds `slot` was noticed after its time


def decide(now: float, last: float, catch_up: str, *, every: int | None = None,
           cron: str | None = None) -> Decision:
    """The decision at `now` for a schedule whose latest fired (or skipped) slot is `last`."""
    slot = slot_at(now, every=every, cron=cron)
    if slot <= last:
        return Decision("wait", None, next_after(max(now, last), every=every, cron=cron))
    following = next_after(slot, every=every, cron=cron)
    late = now - slot
    if late > grace_for(slot, following) and catch_up == "skip":
        return Decision("skip", slot, following, late)
    return Decision("fire", slot, following, late)

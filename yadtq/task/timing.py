"""When a task may run: `countdown`/`eta` (not before) and `expires` (not after), read and checked once.

The Python client, the CLI, the HTTP API and the seed-format JSON message all
take the same three options:

* `countdown`: seconds from submit (a number >= 0);
* `eta`: an absolute time: a timezone-aware `datetime`, epoch seconds, or (JSON,
  CLI) an ISO-8601 text; a naive datetime or text is taken as UTC;
* `expires`: seconds from submit (a number > 0), or an absolute time as for `eta`.

Relative times are kept relative here and resolved by Redis when the record is
written (`submit.lua`, `step.lua`), so every host agrees on one clock. The
message a scheduled task is published with carries absolute times: `eta` and
`expires-at` (epoch seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from yadtq.errors import MessageError

# Further ahead than this is refused as a mistake (a year, like the longest time limit).
MAX_AHEAD = 366 * 86_400.0
# Epoch seconds before this (2001-09-09) are not an absolute time: a relative number was meant.
MIN_EPOCH = 1e9

When = datetime | float | int | str


@dataclass(frozen=True)
class Timing:
    """A task's time window. Absolute times are epoch seconds; relative ones count from the record's
    creation (Redis time). At most one of `eta`/`countdown`, at most one of `expires_at`/`expires`."""

    eta: float | None = None
    countdown: float | None = None
    expires_at: float | None = None
    expires: float | None = None

    @property
    def delayed(self) -> bool:
        return self.eta is not None or bool(self.countdown)

    @property
    def empty(self) -> bool:
        return self == NO_TIMING

    @classmethod
    def of(cls, countdown: float | None = None, eta: When | None = None, expires: When | None = None,
           task_id: str | None = None) -> Timing:
        """Checks the user's options; raises `MessageError` for a bad one."""
        if countdown is not None and eta is not None:
            raise MessageError("give countdown or eta, not both", task_id)
        cd = None if countdown is None else _seconds("countdown", countdown, task_id, zero_ok=True)
        at = None if eta is None else absolute("eta", eta, task_id)
        exp_at = exp_in = None
        if expires is not None:
            if isinstance(expires, (datetime, str)):
                exp_at = absolute("expires", expires, task_id)
            else:
                exp_in = _seconds("expires", expires, task_id, zero_ok=False)
        return cls(at, cd, exp_at, exp_in)

    @classmethod
    def from_json(cls, body: dict[str, Any], task_id: str) -> Timing:
        """The fields of a JSON message: "countdown", "eta", "expires", "expires-at" (what the scheduler sends)."""
        timing = cls.of(body.get("countdown"), body.get("eta"), body.get("expires"), task_id)
        if body.get("expires-at") is not None:
            if timing.expires_at is not None or timing.expires is not None:
                raise MessageError("give expires or expires-at, not both", task_id)
            timing = Timing(timing.eta, timing.countdown, absolute("expires-at", body["expires-at"], task_id))
        return timing

    def json_fields(self) -> dict[str, float]:
        """The fields a message carries (only those set)."""
        named = {"eta": self.eta, "countdown": self.countdown, "expires-at": self.expires_at, "expires": self.expires}
        return {k: v for k, v in named.items() if v is not None}

    def lua_args(self) -> list[str]:
        """ARGV for submit.lua and step.lua: eta, countdown, expires_at, expires ("" where unset)."""
        return ["" if v is None else repr(v) for v in (self.eta, self.countdown, self.expires_at, self.expires)]


NO_TIMING = Timing()


def _seconds(name: str, value: Any, task_id: str | None, *, zero_ok: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not zero_ok) or value > MAX_AHEAD:
        least = "0" if zero_ok else "more than 0"
        raise MessageError(f"{name!r} must be a number of seconds from {least} to {MAX_AHEAD:g}", task_id)
    return float(value)


def absolute(name: str, value: Any, task_id: str | None = None) -> float:
    """Epoch seconds of an absolute time (a datetime, epoch seconds, or ISO-8601 text)."""
    when: float
    if isinstance(value, datetime):
        when = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise MessageError(f"{name!r} is not an ISO-8601 time: {value[:60]!r}", task_id) from None
        return absolute(name, parsed, task_id)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        when = float(value)
    else:
        raise MessageError(f"{name!r} must be a datetime, epoch seconds or an ISO-8601 time", task_id)
    if when < MIN_EPOCH:
        raise MessageError(f"{name!r} of {when:g} is not an absolute time (epoch seconds); "
                           f"for seconds from now use countdown/expires", task_id)
    return when

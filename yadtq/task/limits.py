"""Rate and concurrency limits of a task name: how they are written and what they mean.

    @task(rate_limit="100/s")        # farm-wide: at most 100 starts a second, evenly spaced
    @task(max_concurrency=3)         # farm-wide: at most 3 running at once
    @task(key_concurrency=2)         # per ordering key: 2 at a time instead of 1

A rate is "N/s", "N/m" or "N/h" (N may be a decimal: "0.5/s"). The worker checks a
rate as a spacing between starts (GCRA): one start every `interval` seconds, so
"60/m" is one a second, never sixty in the first second of a minute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from yadtq.errors import ConfigError

_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    """`count` starts per `period` seconds."""

    count: float
    period: float
    text: str

    @property
    def interval(self) -> float:
        """Seconds between two starts."""
        return self.period / self.count

    @property
    def per_second(self) -> float:
        return self.count / self.period


def parse_rate(text: str) -> Rate:
    """'100/s', '5/m', '2/h' (also '/sec', '/min', '/hour'); raises `ConfigError` otherwise."""
    m = _RATE.match(text.lower()) if isinstance(text, str) else None
    if m is None or m.group(2) not in _PERIODS:
        raise ConfigError(f"rate limit {text!r}: write it as N/s, N/m or N/h (for example '100/s')")
    count = float(m.group(1))
    if count <= 0:
        raise ConfigError(f"rate limit {text!r}: the count must be positive")
    return Rate(count, _PERIODS[m.group(2)], text.strip())


def check_count(what: str, value: int | None) -> int | None:
    """A concurrency limit: None (no limit) or an int >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be an integer >= 1 (got {value!r})")
    return value


@dataclass(frozen=True)
class Limits:
    """The limits of one task name (None: no limit)."""

    rate_limit: str | None = None
    max_concurrency: int | None = None
    key_concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)
        check_count("max_concurrency", self.max_concurrency)
        check_count("key_concurrency", self.key_concurrency)

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.rate_limit, self.max_concurrency, self.key_concurrency))

    def as_dict(self) -> dict[str, Any]:
        return {"rate_limit": self.rate_limit, "max_concurrency": self.max_concurrency,
                "key_concurrency": self.key_concurrency}


def stored_form(fields: dict[str, Any]) -> dict[str, Any]:
    """What the claim step reads (yadtq/store/lua/step.lua): the given fields only, a rate also as
    its `interval` in seconds; None stays (null: explicitly no limit, over a decorator's)."""
    out = dict(fields)
    if "rate_limit" in fields:
        rate = fields["rate_limit"]
        out["interval"] = parse_rate(rate).interval if rate is not None else None
    return out

"""Redis outages seen from the loop thread: a call that fails starts a backoff, and while it
runs no Redis call is made at all.

Each failing call can block for the socket timeout, and a few of them in one turn would
outlast the consumer's poll limit (the worker would drop out of its group). So the loop
keeps polling during an outage (group membership) but takes nothing in, and tries Redis
again after 0.2 s, then twice as long each time, up to 5 s; behind Sentinel up to 1 s
(`max_delay_for`): there an outage is usually a failover, over in a few seconds, and a worker
still waiting out its backoff once the new primary serves lets the leases of its running
tasks lapse, so their late outcomes are fenced out and the tasks run a second time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from yadtq.config import Settings
from yadtq.store.connection import REDIS_UNAVAILABLE
from yadtq.store.sentinel import down_after_s, is_sentinel_url, parse_sentinel_url

log = logging.getLogger(__name__)
T = TypeVar("T")

REDIS_ERRORS = REDIS_UNAVAILABLE
MAX_DELAY = 5.0
SENTINEL_MAX_DELAY = 1.0  # at most a second between tries while the Sentinels promote a replica
# A failover lasts the Sentinels' down-after, then about a second to elect and promote; a worker is
# back at most SENTINEL_MAX_DELAY after that.
FAILOVER_MARGIN_S = 2.0


def max_delay_for(settings: Settings) -> float:
    """The longest wait between two tries of Redis during an outage, for `settings.redis_url`."""
    return SENTINEL_MAX_DELAY if is_sentinel_url(settings.redis_url) else MAX_DELAY


def warn_if_lease_shorter_than_a_failover(settings: Settings) -> bool:
    """Behind Sentinel, logs a warning (and returns True) when a failover outlasts the lease: the
    lease of a task running across it lapses before its worker can renew it, another worker may
    take the task over, and it runs twice."""
    if not is_sentinel_url(settings.redis_url):
        return False
    down = down_after_s(parse_sentinel_url(settings.redis_url))
    if down is None or settings.lease >= down + FAILOVER_MARGIN_S:
        return False
    log.warning("YADTQ_LEASE (%gs) is shorter than a Redis failover (the Sentinels wait %gs before one, "
                "and it takes about %gs more): a task running across a failover may run twice; "
                "raise YADTQ_LEASE above %gs", settings.lease, down, FAILOVER_MARGIN_S, down + FAILOVER_MARGIN_S)
    return True


class RedisOutages:
    """`on_lost(error)` runs when an outage starts, `on_back()` when a call succeeds again."""

    def __init__(self, on_lost: Callable[[Exception], None], on_back: Callable[[], None],
                 max_delay: float = MAX_DELAY) -> None:
        self.on_lost = on_lost
        self.on_back = on_back
        self.max_delay = max_delay
        self.down_until = 0.0  # monotonic time the backoff ends (0.0: Redis is up)
        self.delay = 0.2

    @property
    def down(self) -> bool:
        """An outage's backoff runs: make no Redis call now."""
        return time.monotonic() < self.down_until

    def call(self, call: Callable[[], T], default: T) -> T:
        """A Redis call on the loop thread; during an outage returns `default` (callers retry later)."""
        if self.down:
            return default
        try:
            result = call()
        except REDIS_ERRORS as exc:
            self.lost(exc)
            return default
        self.ok()
        return result

    def lost(self, exc: Exception) -> None:
        """A Redis call failed: start (or lengthen) the backoff."""
        if self.down_until == 0.0:
            log.warning("Redis unavailable (%s); pausing intake, retrying", exc)
            self.on_lost(exc)
        self.down_until = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, self.max_delay)

    def ok(self) -> None:
        """A Redis call succeeded: the outage, if any, is over."""
        if self.down_until:
            log.info("Redis available again")
            self.on_back()
        self.down_until = 0.0
        self.delay = 0.2

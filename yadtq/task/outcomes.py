"""Control-flow signals a task raises to steer its own outcome (kept apart from the error tree).

    from yadtq import Retry, Fail

    @task
    def fetch(url: str) -> str:
        if rate_limited():
            raise Retry(delay=30)        # try again in 30 s (counts as one of its tries)
        if not url.startswith("https:"):
            raise Fail("refusing a plain-http URL")   # failed at once, no retry
"""

from __future__ import annotations


class Retry(Exception):
    """Retry this task after `delay` seconds (default: the worker's backoff), within its tries."""

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        if delay is not None and delay < 0:
            raise ValueError("delay must not be negative")
        self.delay = delay
        super().__init__(reason)


class Fail(Exception):
    """Fail this task now, whatever tries it has left."""

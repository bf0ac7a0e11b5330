"""Time limits: SIGALRM raises `TimeLimitExceeded` inside the running task.

Tasks run on the worker's main thread, so the signal interrupts Python code
and blocking sleeps alike. Off the main thread (a worker embedded in a
thread) limits cannot be enforced and are skipped with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from yadtq.errors import TimeLimitExceeded

log = logging.getLogger(__name__)


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        log.warning("time limit of %gs not enforced off the main thread", seconds)
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"time limit of {seconds:g}s exceeded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

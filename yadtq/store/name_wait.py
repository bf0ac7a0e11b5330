"""Waiting for a worker name held by a worker that cannot be seen from here.

A holder in another container or boot (a StatefulSet pod restarted in a new
container under the same host name) may be dead, but its pid says nothing here:
its name frees itself when its lease ends. Refusing at once would make the new
worker exit and restart-loop until then, so it waits for that lease instead.
It still refuses at once a holder seen alive (this process space, pid alive),
and after one full lease a holder whose lease kept being renewed: that one runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from yadtq.store.connection import RedisClient
from yadtq.store.keys import Keys
from yadtq.store.worker_names import NameHolder, claim_worker_name, name_holder

POLL = 0.25  # also catches a holder that releases its name at a clean exit before its lease ends


@dataclass(frozen=True)
class NameWait:
    claimed: bool
    holder: NameHolder | None = None  # the live holder that kept the name (refused)
    stopped: bool = False  # `stop` was set while waiting


def lease_left(client: RedisClient, keys: Keys, name: str) -> float:
    """Seconds until the name's lease ends (0 when it is not held)."""
    ms = int(client.pttl(keys.worker_name(name)))
    return max(0.0, ms / 1000)


def await_worker_name(client: RedisClient, keys: Keys, name: str, incarnation: str, ttl: float,
                      stop: threading.Event, say: Callable[[NameHolder, float], None]) -> NameWait:
    """Claims `name`, waiting for the lease of a holder that cannot be seen from here.

    `say(holder, seconds)` runs once when a wait starts: at most `seconds` (the
    holder's lease left, or one full lease when it is renewed meanwhile). A holder
    of this process space that runs, or any other that holds the name past that
    (its lease was renewed: it runs), is returned unclaimed.
    """
    waiting_for: NameHolder | None = None
    deadline = 0.0
    while True:
        if claim_worker_name(client, keys, name, incarnation, ttl):
            return NameWait(True)
        holder = name_holder(client, keys, name)
        if holder is None:  # lapsed between the two calls: claim again
            continue
        if holder.here():  # claim_worker_name replaces one whose pid is gone: this one runs
            return NameWait(False, holder)
        if waiting_for is None:
            left = lease_left(client, keys, name)
            # One full lease covers the holder's last renewal: past it, only a live holder still holds.
            waiting = max(left, ttl)
            deadline = time.monotonic() + waiting + POLL  # + POLL: a lease that lapses just then
            waiting_for = holder
            say(holder, left)
        elif holder.incarnation != waiting_for.incarnation:  # someone claimed it meanwhile: it just ran
            return NameWait(False, holder)
        now = time.monotonic()
        if now >= deadline:
            return NameWait(False, holder)
        left = lease_left(client, keys, name)
        if stop.wait(min(POLL, max(left, 0.01), deadline - now)):
            return NameWait(False, holder, stopped=True)

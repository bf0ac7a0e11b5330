"""Waiting until the broker speaks Kafka and Redis serves (done loading its data).

`yadtq wait` runs it in a process of its own (the Procfile's `yadtq wait && ...`, for honcho and
scripts); `yadtq run` runs it once, in the supervisor, for every Procfile line that begins so,
instead of starting one more Python process per line (each about 1 s of CPU on a machine that is
starting a dozen at once).

`yadtq run` then waits for a worker too (`wait_for_a_worker`) before it starts the dashboard and
the API: on a busy machine their start (about 1.6 s of CPU together) competed with the workers'
own, and every moment a worker's first JoinGroup is late delays the first task. (The monitor and
the farm start with the services and wait for them themselves: `Settings.service_wait`.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from yadtq.config import Settings
from yadtq.errors import YADTQError

# The Procfile prefix the supervisor takes over (`yadtq run`); honcho runs it as written.
WAIT_PREFIX = "yadtq wait && "
POLL = 0.05  # seconds between probes: both answer in well under a millisecond when up


def wait_for_services(s: Settings, timeout: float, say: Callable[[str], None] = lambda line: None,
                      stop: threading.Event | None = None) -> str | None:
    """None once both serve; else why not (after `timeout` seconds without progress, or "stopped"
    when `stop` is set). Says what it waits on when that changes, or every 5 s."""
    from yadtq.ops.services import broker_address, broker_ready, redis_address
    from yadtq.store.connection import redis_ready
    probes = (("Kafka broker", broker_address(s), broker_ready), ("Redis", redis_address(s), redis_ready))
    deadline = time.monotonic() + timeout
    for what, (host, port), probe in probes:
        said, said_at = "", time.monotonic()
        while True:
            ok, why = probe(s)
            if ok:
                break
            now = time.monotonic()
            if why.startswith("loading"):
                deadline = max(deadline, now + timeout)  # it is making progress: keep waiting
            if now > deadline:
                return f"{what} at {host}:{port} did not serve within {timeout:g}s ({why})"
            if why != said and (why.startswith("loading") or now - said_at > 5):
                say(f"{what} at {host}:{port}: {why}")
                said, said_at = why, now
            if stop is not None and stop.wait(POLL):
                return "stopped"
            if stop is None:
                time.sleep(POLL)
    return None


def wait_for_a_worker(s: Settings, timeout: float, stop: threading.Event) -> str | None:
    """None once a live worker has announced the tasks it serves (it is joining its group next), or
    after `timeout` seconds without one (the rest of the stack starts anyway); "stopped" when `stop`
    is set."""
    from yadtq.store.connection import RedisError, connect_redis
    from yadtq.store.keys import Keys
    from yadtq.store.served import live_served
    deadline = time.monotonic() + timeout
    client = None
    try:
        while time.monotonic() < deadline:
            try:
                client = client or connect_redis(s, retries=0)
                if live_served(client, Keys(s.prefix)):
                    return None
            except (RedisError, YADTQError):
                pass  # the services were up a moment ago: the next probe tells
            if stop.wait(POLL):
                return "stopped"
        return None
    finally:
        if client is not None:
            client.close()

"""Unique live worker names: each name is leased in Redis by one incarnation at a time.

The registry, the failure history and the per-worker counts are keyed by name,
so two live workers with one name would merge into one (flipping between LEFT
and ALIVE). A worker claims its name before it starts and keeps the lease
alive; a second worker with that name is refused while the lease lasts.

A worker that died without releasing its name (kill -9, crash injection) does
not block its own restart beside it: a claim may replace a holder whose pid is
gone, but only one from the claimant's own process space (the same host name,
boot and pid namespace, `process_space`). A pid says nothing about a process in
another container or on another boot, even under the same host name: a live
holder there would be replaced, and with it the static group member that bears
the name fenced. Elsewhere the name frees itself when the lease ends, and the claimant waits for
that (name_wait.py) rather than exiting.

Interface for the engine: claim once before serving, `renew_worker_name`
every heartbeat (False: the name was lost, another worker has it), and
`release_worker_name` at a clean exit. `name_ttl(settings)` is the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from yadtq.config import Settings
from yadtq.store.connection import RedisClient, RedisError
from yadtq.store.keys import Keys
from yadtq.store.replies import decode_flag
from yadtq.store.scripts import bind

log = logging.getLogger(__name__)


def name_ttl(settings: Settings) -> float:
    """How long a name stays held without renewal: as long as the monitor waits before DEAD."""
    return max(settings.dead_after, 3 * settings.heartbeat_interval)


@cache
def process_space() -> str:
    """Where this process's pids mean something: the boot id and the pid namespace ("" where the
    system shows neither: not Linux). Two processes see each other's pids only in the same space."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{boot}/{namespace}" if boot or namespace else ""


@dataclass(frozen=True)
class NameHolder:
    incarnation: str
    host: str
    pid: int
    since: float
    space: str = ""  # the holder's process space ("" from a worker that did not note it)

    def here(self) -> bool:
        """Whether the holder ran in this very process space, where its pid can be checked."""
        return self.host == socket.gethostname() and self.space == process_space()

    def gone(self) -> bool:
        """Whether the holder is known dead: a process of this process space whose pid is gone.
        Anywhere else its pid may be another process's, or missing here while it runs there."""
        return self.here() and not pid_alive(self.pid)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


def _claim(client: RedisClient, keys: Keys, name: str, incarnation: str, ttl: float, replace: str = "") -> bool:
    return decode_flag(bind(client, "worker_name_claim")(
        keys=[keys.worker_name(name)],
        args=[incarnation, _ms(ttl), socket.gethostname(), os.getpid(), replace, process_space()]))


def claim_worker_name(client: RedisClient, keys: Keys, name: str, incarnation: str, ttl: float) -> bool:
    """Takes `name` for `incarnation` for `ttl` seconds. False when another live worker holds it.

    Claiming again with the same incarnation renews. A holder of this process
    space whose process is gone is replaced atomically (only that holder, not
    one that claimed in between); any other waits for its lease to end.
    """
    if _claim(client, keys, name, incarnation, ttl):
        return True
    holder = name_holder(client, keys, name)
    if holder is None:  # expired between the two calls
        return _claim(client, keys, name, incarnation, ttl)
    if holder.gone():
        return _claim(client, keys, name, incarnation, ttl, replace=holder.incarnation)
    return False


def renew_worker_name(client: RedisClient, keys: Keys, name: str, incarnation: str, ttl: float) -> bool:
    """Extends the lease; False when `incarnation` no longer holds the name."""
    return decode_flag(bind(client, "worker_name_renew")(keys=[keys.worker_name(name)], args=[incarnation, _ms(ttl)]))


def release_worker_name(client: RedisClient, keys: Keys, name: str, incarnation: str) -> None:
    """Frees the name if `incarnation` holds it (a no-op otherwise)."""
    bind(client, "worker_name_release")(keys=[keys.worker_name(name)], args=[incarnation])


def name_holder(client: RedisClient, keys: Keys, name: str) -> NameHolder | None:
    raw = client.hgetall(keys.worker_name(name))
    if not raw:
        return None
    h = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in raw.items()}
    return NameHolder(h.get("incarnation", ""), h.get("host", ""), int(h.get("pid") or 0), float(h.get("since") or 0),
                      h.get("space", ""))


def pid_alive(pid: int) -> bool:
    """True while `pid` runs on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NameLease:
    """Keeps a claimed name alive from a daemon thread, every third of its lease, until `release()`.

    `on_lost` runs (once, on that thread) when another incarnation holds the name;
    a name that merely expired (Redis was away longer than the lease) is claimed again.
    A Redis error skips one renewal: the next one may still land within the lease.
    """

    def __init__(self, client: RedisClient, keys: Keys, name: str, incarnation: str, ttl: float,
                 on_lost: Callable[[NameHolder | None], None]) -> None:
        self.client, self.keys, self.name, self.incarnation, self.ttl = client, keys, name, incarnation, ttl
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"name-lease-{name}")

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if renew_worker_name(self.client, self.keys, self.name, self.incarnation, self.ttl):
                    continue
                if self._stop.is_set():  # released meanwhile (a renewal held up by a stalled Redis): no claim again
                    return
                if claim_worker_name(self.client, self.keys, self.name, self.incarnation, self.ttl):
                    continue
                self.on_lost(name_holder(self.client, self.keys, self.name))
                return
            except RedisError as exc:
                log.warning("could not renew worker name %s: %s", self.name, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            release_worker_name(self.client, self.keys, self.name, self.incarnation)
        except RedisError as exc:
            log.warning("could not release worker name %s (it frees itself in %gs): %s", self.name, self.ttl, exc)

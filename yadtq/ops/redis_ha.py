"""A local Redis that survives losing its primary: a primary, a replica and three Sentinels.

`yadtq services --redis-ha` starts them (the same server binary runs in
sentinel mode) and prints the one URL every process then uses,
`YADTQ_REDIS_URL=redis+sentinel://host:p1,host:p2,host:p3/mymaster/0`.

Both data servers keep an append-only file synced on every write (see
`start_redis`); the Sentinels declare the primary down after
`down_after_ms` without an answer, and two of three must agree before one
of them promotes the replica (a quorum of 2: one Sentinel alone cannot
fail over on a link only it lost).
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from yadtq.config import Settings
from yadtq.ops.ports import ServiceError, answers
from yadtq.ops.services import _parent_death_signal, _wait_until_answers, redis_address, redis_binary, start_redis
from yadtq.store.sentinel import SCHEME, is_sentinel_url, parse_sentinel_url, primary_address, sentinels_ready

MASTER = "mymaster"
DEFAULT_SENTINEL_PORTS = (26379, 26380, 26381)
QUORUM = 2
REVIVE_BACKOFF_S = 5.0
log = logging.getLogger(__name__)
SENTINEL_PORT_OFFSET = 20000  # a Sentinel URL's first port minus this: the primary's port


@dataclass
class RedisHA:
    """The processes of one local primary + replica + Sentinels; `stop()` ends them."""

    host: str
    primary_port: int
    replica_port: int
    sentinel_ports: tuple[int, ...]
    data_dir: Path
    log_dir: Path
    master: str = MASTER
    down_after_ms: int = 2000
    # When all three Sentinels see the primary down at once they may each vote for themselves; the
    # election is tried again after twice this. At 10 s such a failover left no primary for 21 s.
    failover_timeout_ms: int = 4000
    # Each process as it starts (a caller may pass its own dict, to stop them after an interrupt).
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _revive_at: dict[str, float] = field(default_factory=dict)  # process -> when to try starting it again

    @property
    def url(self) -> str:
        hosts = ",".join(f"{self.host}:{p}" for p in self.sentinel_ports)
        return f"{SCHEME}://{hosts}/{self.master}/0"

    def start(self, say: Callable[[str], None] = lambda line: None) -> None:
        """Starts the five processes; raises ServiceError when a port is taken or one does not come up."""
        ports = (self.primary_port, self.replica_port, *self.sentinel_ports)
        taken = [p for p in ports if answers(self.host, p)]
        if taken:
            raise ServiceError(f"--redis-ha needs ports {', '.join(map(str, ports))} on {self.host} free; "
                               f"{', '.join(map(str, taken))} answer(s): stop what runs there")
        self._start_data_server("redis-primary", self.primary_port)
        self._start_data_server("redis-replica", self.replica_port, "--replicaof", self.host, str(self.primary_port))
        say(f"redis: started primary {self.host}:{self.primary_port} (pid {self.procs['redis-primary'].pid}) "
            f"and replica {self.host}:{self.replica_port} (pid {self.procs['redis-replica'].pid}), "
            f"append-only files in {self.data_dir}/")
        for port in self.sentinel_ports:
            self.procs[f"sentinel-{port}"] = self._start_sentinel(port)
        self.wait_ready()
        pids = ", ".join(str(self.procs[f"sentinel-{p}"].pid) for p in self.sentinel_ports)
        say(f"redis: started {len(self.sentinel_ports)} Sentinels at {self.host}:"
            f"{','.join(map(str, self.sentinel_ports))} (pid {pids}) watching {self.master!r}, quorum {QUORUM}, "
            f"failover after {self.down_after_ms} ms without an answer")

    def primary(self) -> str:
        """The name of the data server the Sentinels take for the primary now: redis-primary or redis-replica
        (after a failover the "replica" serves as the primary)."""
        found = primary_address(parse_sentinel_url(self.url))
        if found is None:
            raise ServiceError("no Sentinel answers")
        return "redis-primary" if found[1] == self.primary_port else "redis-replica"

    def restart(self, name: str, wait: bool = True) -> None:
        """Starts data server `name` again (after it died), on its port with its files, as a replica
        of the primary the Sentinels name; returns once they count it in sync (with `wait`; else
        once it answers, and `wait_ready` tells when they do)."""
        port = self.primary_port if name == "redis-primary" else self.replica_port
        # Started as a replica at once: started as a primary, it would serve its own (older) data
        # as a second primary until the Sentinels turn it into a replica.
        found = primary_address(parse_sentinel_url(self.url))
        if found is None:  # no Sentinel answers: as the set started
            found = (self.host, self.primary_port) if name == "redis-replica" else None
        elif found[1] == port:  # no failover yet: it is the primary back, with its append-only file
            found = None
        extra = ("--replicaof", found[0], str(found[1])) if found else ()
        self._start_data_server(name, port, *extra)
        if wait:
            self.wait_ready()

    def keeps(self, name: str) -> bool:
        """True for a process of the set: `revive` starts it again when it dies."""
        return name in ("redis-primary", "redis-replica") or name.startswith("sentinel-")

    def revive(self) -> None:
        """Starts again each process of the set that died: a Sentinel, so the quorum outlives a second
        loss; a data server, so the set has a spare for the next failover, then waits until the
        Sentinels count it in sync, reviving any Sentinel that dies meanwhile (waiting on a quorum a
        dead Sentinel keeps short would stall every revive for the whole wait). A failed start is
        tried again `REVIVE_BACKOFF_S` later."""
        self._revive_sentinels()
        back = []
        for name in self._dead(data=True):
            log.warning("%s (pid %d) exited with %s; starting it again: it rejoins as a replica",
                        name, self.procs[name].pid, self.procs[name].returncode)
            try:
                self.restart(name, wait=False)
            except ServiceError as exc:
                self._later(name, exc)
                continue
            back.append(name)
        if not back:
            return
        try:
            self.wait_ready(tend=self._revive_sentinels)
        except ServiceError as exc:
            log.warning("%s started again, not in sync yet: %s", ", ".join(back), exc)
            return
        for name in back:
            log.info("%s is back (pid %d)", name, self.procs[name].pid)

    def _revive_sentinels(self) -> None:
        for name in self._dead(data=False):
            log.warning("%s (pid %d) exited with %s; starting it again", name, self.procs[name].pid,
                        self.procs[name].returncode)
            try:
                self._start_sentinel(int(name.removeprefix("sentinel-")), fresh=False)
            except ServiceError as exc:
                self._later(name, exc)
                continue
            log.info("%s is back (pid %d)", name, self.procs[name].pid)

    def _dead(self, data: bool) -> list[str]:
        """The data servers (`data`) or the Sentinels that died and are due for a start."""
        now = time.monotonic()
        return [name for name, proc in list(self.procs.items())
                if self.keeps(name) and name.startswith("sentinel-") != data and proc.poll() is not None
                and now >= self._revive_at.get(name, 0.0)]

    def _later(self, name: str, exc: ServiceError) -> None:
        self._revive_at[name] = time.monotonic() + REVIVE_BACKOFF_S
        log.warning("%s did not come back (%s); trying again in %gs", name, exc, REVIVE_BACKOFF_S)

    def _start_data_server(self, name: str, port: int, *extra_args: str) -> None:
        started: dict[str, subprocess.Popen[bytes]] = {}
        # A primary sends a replica that (re)joins its first copy at once, not after Redis's default
        # 5 s wait for more replicas to share it: until the copy is in, the set has no spare.
        extra_args = ("--repl-diskless-sync-delay", "0", *extra_args)
        try:
            start_redis(self.host, port, self.data_dir, self.log_dir, started, extra_args=extra_args)
        finally:  # recorded even when it never answered, so stop() ends it
            if "redis" in started:
                self.procs[name] = started["redis"]

    def wait_ready(self, timeout: float = 60.0, tend: Callable[[], None] = lambda: None) -> None:
        """Returns once every Sentinel knows the primary, its replica in sync and the others; `tend`
        is called on each turn of the wait."""
        # Sentinels learn of the replica from the primary's INFO (every 10 s) and of each other by
        # hello messages (every 2 s): until they have, losing the primary would stop everything.
        target = parse_sentinel_url(self.url)
        deadline = time.monotonic() + timeout
        while True:
            tend()
            ready, why = sentinels_ready(target)
            if ready:
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"the Sentinels are not ready to fail over after {timeout:g}s: {why}")
            time.sleep(0.2)

    def _start_sentinel(self, port: int, fresh: bool = True) -> subprocess.Popen[bytes]:
        # Sentinel rewrites its configuration file (it records what it learns): one file each. A Sentinel
        # started again (`fresh` False) reads its own: its id, the primary it last knew, the others.
        conf = self.data_dir / f"sentinel-{port}.conf"
        if fresh or not conf.exists():
            conf.write_text("\n".join([
                f"port {port}", f"bind {self.host}", "daemonize no", "protected-mode no",
                f"dir {self.data_dir.resolve()}",
                f"sentinel monitor {self.master} {self.host} {self.primary_port} {QUORUM}",
                f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}",
                f"sentinel failover-timeout {self.master} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {self.master} 1", ""]))
        log_path = self.log_dir / f"sentinel-{port}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen([*_parent_death_signal(), redis_binary(), str(conf.resolve()), "--sentinel"],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[f"sentinel-{port}"] = proc  # recorded at once: stop() ends it even if it never answers
        _wait_until_answers(proc, self.host, port, f"Sentinel ({Path(redis_binary()).name})", log_path)
        return proc

    def stop(self) -> None:
        stop_servers(self.procs, reversed(list(self.procs.values())))  # Sentinels first: no failover while stopping


def stop_servers(procs: dict[str, subprocess.Popen[bytes]], order: Iterable[subprocess.Popen[bytes]]) -> None:
    """Terminates the servers in `order`, waits for each (killed after 10 s), and forgets them."""
    for proc in order:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    procs.clear()


def start_redis_ha(settings: Settings, started: dict[str, subprocess.Popen[bytes]],
                   say: Callable[[str], None]) -> RedisHA:
    """What `yadtq services --redis-ha` starts (its `url` is the one every process uses).

    With a `redis+sentinel://` YADTQ_REDIS_URL the Sentinels take its ports and the
    primary its first Sentinel's port - 20000 (26379 -> 6379, Redis's own pairing);
    otherwise the primary takes the plain URL's port, and the Sentinels their usual
    26379-26381. The replica listens one port above the primary.
    """
    if is_sentinel_url(settings.redis_url):
        target = parse_sentinel_url(settings.redis_url)
        (host, first), sentinel_ports = target.sentinels[0], tuple(p for _, p in target.sentinels)
        primary = first - SENTINEL_PORT_OFFSET
        if primary <= 0:
            raise ServiceError(f"--redis-ha puts the primary at the first Sentinel's port - {SENTINEL_PORT_OFFSET}, "
                               f"and {first} leaves none: use Sentinel ports above {SENTINEL_PORT_OFFSET}")
    else:
        (host, primary), sentinel_ports = redis_address(settings), DEFAULT_SENTINEL_PORTS
    ha = RedisHA(host, primary, primary + 1, sentinel_ports, Path(settings.data_dir), Path(settings.log_dir),
                 procs=started)
    ha.start(say)
    return ha

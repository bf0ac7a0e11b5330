"""The services a chaos run owns and may kill: an embedded broker or one Apache Kafka node,
and a Redis on its append-only file, or a primary + replica + three Sentinels
(worker_farm/chaos.py injects the faults)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from yadtq.config import Settings
from yadtq.ops.kafka_cluster import KafkaCluster
from yadtq.ops.ports import ServiceError, free_port
from yadtq.ops.redis_ha import RedisHA
from yadtq.ops.services import start_broker, start_redis
from yadtq.store.connection import connect_redis, redis_ready
from yadtq.store.sentinel import parse_sentinel_url, primary_address


@dataclass
class ServiceControl:
    """How a chaos run kills and restarts the services it owns (each call blocks until
    the service answers again)."""

    restart_broker: Callable[[], None]
    restart_redis: Callable[[], None]
    down_for: float = 1.0  # seconds each service stays dead
    # Behind Sentinel: kill -9 of the current primary, returning once the Sentinels name a new one;
    # then, later, start the killed one again (it rejoins as a replica; returns once in sync).
    kill_primary: Callable[[], float] | None = None
    rejoin_primary: Callable[[], None] | None = None


class OwnedServices:
    """A broker and a Redis on free ports that this run may kill and restart.

    The broker is the embedded one (a restart loses its log), or with `kafka`
    a single Apache Kafka node (`kafka` holds its broker settings; a kill -9
    and restart keeps its log on disk).

    Redis runs with `appendfsync always`: with the default `everysec`, a kill -9
    loses up to the last second of writes (a finished task could come back
    `processing` and run again), which is Redis's promise, not YADTQ's.

    With `redis_ha` Redis is a primary, a replica and three Sentinels
    (yadtq.ops.redis_ha, as `yadtq services --redis-ha` starts them), and the
    run's Redis fault is `primary`: kill -9 of whichever server is the primary.
    """

    def __init__(self, base: Path, down_for: float = 1.0, kafka: Mapping[str, str] | None = None,
                 redis_ha: bool = False) -> None:
        self.base, self.down_for = base, down_for
        self.kport, self.rport = free_port(), free_port()
        self.ha: RedisHA | None = None
        self._killed = ""  # the data server killed by the last primary fault, until it rejoins
        self.cluster: KafkaCluster | None = None
        if kafka is None:
            self.broker = start_broker("127.0.0.1", self.kport, base / "services")
        else:
            self.cluster = KafkaCluster(base / "kafka", base / "services", [self.kport], [free_port()],
                                        broker_config=kafka)
            self.cluster.start()
            self.broker = self.cluster.procs[1]
        if redis_ha:
            self.ha = RedisHA("127.0.0.1", self.rport, free_port(), (free_port(), free_port(), free_port()),
                              base / "data", base / "services")
            self.ha.data_dir.mkdir(parents=True, exist_ok=True)
            self.ha.log_dir.mkdir(parents=True, exist_ok=True)
            try:
                self.ha.start()
            except BaseException:
                self.stop()
                raise
        else:
            self.redis = self._start_redis()

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kport}"

    @property
    def redis_url(self) -> str:
        return self.ha.url if self.ha is not None else f"redis://127.0.0.1:{self.rport}/0"

    def _start_redis(self) -> subprocess.Popen[bytes]:
        proc = start_redis("127.0.0.1", self.rport, self.base / "data", self.base / "services")
        settings = Settings(redis_url=self.redis_url)
        # A restarted Redis answers while still loading its append-only file, and refuses commands
        # until it is done: wait until it serves.
        deadline = time.monotonic() + 60
        while not redis_ready(settings)[0] and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        client = connect_redis(settings)
        try:
            client.config_set("appendfsync", "always")
        finally:
            client.close()
        return proc

    def restart_broker(self) -> None:
        kill9(self.broker)
        time.sleep(self.down_for)
        if self.cluster is None:
            self.broker = start_broker("127.0.0.1", self.kport, self.base / "services")
        else:
            self.broker = self.cluster.start_node(1)
            self.cluster.wait_ready()

    def restart_redis(self) -> None:
        kill9(self.redis)
        time.sleep(self.down_for)
        self.redis = self._start_redis()

    def kill_primary(self, timeout: float = 60.0) -> float:
        """kill -9 of the primary the Sentinels name; returns once they name another one, with
        the time of the kill (it first waits until the set can fail over)."""
        assert self.ha is not None
        if self._killed:  # the last one killed is not back yet: no replica to promote without it
            self.rejoin_primary()
        self.ha.wait_ready()  # and in sync, known to every Sentinel: this kill can be failed over
        name = self.ha.primary()
        killed_at = time.time()
        kill9(self.ha.procs[name])
        self._killed = name
        target = parse_sentinel_url(self.ha.url)
        killed_port = self.ha.primary_port if name == "redis-primary" else self.ha.replica_port
        deadline = time.monotonic() + timeout
        while (primary_address(target) or ("", killed_port))[1] == killed_port:
            if time.monotonic() > deadline:
                raise ServiceError(f"the Sentinels named no new primary {timeout:g}s after the kill of {name}")
            time.sleep(0.05)
        return killed_at

    def rejoin_primary(self) -> None:
        """Starts the server the last primary fault killed: it rejoins as a replica. Returns once it
        answers (the run goes on meanwhile: the next primary kill waits until it is in sync)."""
        assert self.ha is not None
        if self._killed:
            self.ha.restart(self._killed, wait=False)
            self._killed = ""

    def control(self) -> ServiceControl:
        if self.ha is not None:
            return ServiceControl(self.restart_broker, self._no_plain_redis, self.down_for,
                                  kill_primary=self.kill_primary, rejoin_primary=self.rejoin_primary)
        return ServiceControl(self.restart_broker, self.restart_redis, self.down_for)

    @staticmethod
    def _no_plain_redis() -> None:
        raise ValueError("behind Sentinel the Redis fault is `primary`, not `redis`")

    def stop(self) -> None:
        kill9(self.broker)
        if self.ha is not None:
            self.ha.stop()
        else:
            kill9(self.redis)
        if self.cluster is not None:
            self.cluster.stop()


def kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)

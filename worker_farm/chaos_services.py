"""The services a chaos run owns and may kill: an embedded broker or one Apache Kafka node,
and a Redis on its append-only file (worker_farm/chaos.py injects the faults)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from yadtq.config import Settings
from yadtq.ops.kafka_cluster import KafkaCluster
from yadtq.ops.ports import free_port
from yadtq.ops.services import start_broker, start_redis
from yadtq.store.connection import connect_redis, redis_ready


@dataclass
class ServiceControl:
    """How a chaos run kills and restarts the services it owns (each call blocks until
    the service answers again)."""

    restart_broker: Callable[[], None]
    restart_redis: Callable[[], None]
    down_for: float = 1.0  # seconds each service stays dead


class OwnedServices:
    """A broker and a Redis on free ports that this run may kill and restart.

    The broker is the embedded one (a restart loses its log), or with `kafka`
    a single Apache Kafka node (`kafka` holds its broker settings; a kill -9
    and restart keeps its log on disk).

    Redis runs with `appendfsync always`: with the default `everysec`, a kill -9
    loses up to the last second of writes (a finished task could come back
    `processing` and run again), which is Redis's promise, not YADTQ's.
    """

    def __init__(self, base: Path, down_for: float = 1.0, kafka: Mapping[str, str] | None = None) -> None:
        self.base, self.down_for = base, down_for
        self.kport, self.rport = free_port(), free_port()
        self.cluster: KafkaCluster | None = None
        if kafka is None:
            self.broker = start_broker("127.0.0.1", self.kport, base / "services")
        else:
            self.cluster = KafkaCluster(base / "kafka", base / "services", [self.kport], [free_port()],
                                        broker_config=kafka)
            self.cluster.start()
            self.broker = self.cluster.procs[1]
        self.redis = self._start_redis()

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kport}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.rport}/0"

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

    def control(self) -> ServiceControl:
        return ServiceControl(self.restart_broker, self.restart_redis, self.down_for)

    def stop(self) -> None:
        for proc in (self.broker, self.redis):
            kill9(proc)
        if self.cluster is not None:
            self.cluster.stop()


def kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)

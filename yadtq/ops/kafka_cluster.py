"""Apache Kafka on this machine: fetched once with Maven, run as a local KRaft node or cluster.

`kafka_classpath()` copies the broker's jars (`org.apache.kafka:kafka_2.13`, the version in
`KAFKA_VERSION`) into `~/.cache/yadtq/kafka-<version>/lib` with `mvn dependency:copy-dependencies`
the first time and reuses them after. `KafkaCluster` formats each node's storage (KRaft, no
ZooKeeper), starts 1 or more nodes that are each controller and broker, waits until every broker
is registered and unfenced, and stops them. A node's message log lives under its data directory,
so a restart keeps every topic; its server log goes to `<log_dir>/kafka-<id>/server.log`.

What is missing (java 17+, mvn, the fetch) is one `KafkaSetupError` line saying what to do.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yadtq.ops.ports import ServiceError, answers

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.2"
JAVA_MIN = 17
HEAP = "512m"
DIST = Path(__file__).resolve().parent / "kafka_dist"
# Kafka's own start script's collector settings, with a smaller heap.
JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")


class KafkaSetupError(ServiceError):
    """Apache Kafka cannot run here: java or mvn missing or too old, or the fetch failed."""


def default_cache_root() -> Path:
    return Path.home() / ".cache" / "yadtq"


def java_major(version_output: str) -> int:
    """The major version in `java -version` output ("17.0.15", or "1.8.0_402" for 8)."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not found:
        raise KafkaSetupError(f"cannot read the Java version from: {version_output.strip()[:200]!r}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def check_java() -> str:
    """The `java` on PATH if it is 17 or newer; else `KafkaSetupError`."""
    java = shutil.which("java")
    if java is None:
        raise KafkaSetupError(f"java not found on PATH: Apache Kafka {KAFKA_VERSION} needs Java {JAVA_MIN}+ "
                              "(e.g. apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    major = java_major(out.stderr + out.stdout)
    if major < JAVA_MIN:
        raise KafkaSetupError(f"{java} is Java {major}: Apache Kafka {KAFKA_VERSION} needs Java {JAVA_MIN}+")
    return java


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on `path`, so two processes never fetch into one cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def kafka_classpath(cache_root: Path | None = None, say: Callable[[str], None] = lambda line: None) -> Path:
    """The directory of Kafka's jars, fetched with Maven on first use; raises `KafkaSetupError`."""
    home = (cache_root or default_cache_root()) / f"kafka-{KAFKA_VERSION}"
    lib = home / "lib"
    if (lib / ".complete").exists():
        return lib
    with _locked(home.parent / f"kafka-{KAFKA_VERSION}.lock"):
        if (lib / ".complete").exists():
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaSetupError(f"mvn not found on PATH: Apache Kafka {KAFKA_VERSION} is fetched once with Maven "
                                  "(e.g. apt-get install maven)")
        say(f"kafka: fetching Apache Kafka {KAFKA_VERSION} with Maven into {lib} (once)")
        with tempfile.TemporaryDirectory(dir=home.parent) as tmp:
            # Maven writes next to the pom it runs; a copy keeps the package directory clean.
            shutil.copy(DIST / "pom.xml", Path(tmp) / "pom.xml")
            out = subprocess.run([mvn, "-q", "-B", "dependency:copy-dependencies", f"-Dkafka.version={KAFKA_VERSION}",
                                  f"-DoutputDirectory={tmp}/lib", "-DincludeScope=runtime"],
                                 cwd=tmp, capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                errors = [ln for ln in (out.stdout + out.stderr).splitlines() if "ERROR" in ln] or ["(no output)"]
                raise KafkaSetupError(f"fetching Apache Kafka {KAFKA_VERSION} with Maven failed: {errors[0].strip()}")
            (Path(tmp) / "lib" / ".complete").write_text(KAFKA_VERSION + "\n")
            home.mkdir(parents=True, exist_ok=True)
            if lib.exists():
                shutil.rmtree(lib)
            (Path(tmp) / "lib").rename(lib)
    return lib


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64 without padding, as Kafka makes them."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    port: int
    controller_port: int


def _pdeathsig_prefix() -> list[str]:
    """A node dies with the process that started it (a killed test run or `yadtq services` leaks no JVM)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class KafkaCluster:
    """Local Apache Kafka nodes (each controller and broker) with their storage under `data_dir`.

    The layout (ports, cluster id) is kept in `data_dir/cluster.json`; starting again with the same
    data directory reuses the formatted storage, so topics and committed offsets survive a restart.
    """

    def __init__(self, data_dir: Path, log_dir: Path, ports: Sequence[int], controller_ports: Sequence[int],
                 host: str = "127.0.0.1", heap: str = HEAP, broker_config: Mapping[str, str] | None = None,
                 cache_root: Path | None = None) -> None:
        if not ports or len(ports) != len(controller_ports):
            raise KafkaSetupError("a Kafka cluster needs one broker port and one controller port per node")
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = Path(log_dir).resolve()
        self.host = host
        self.heap = heap
        self.broker_config = dict(broker_config or {})
        self.cache_root = cache_root
        self.nodes = [NodeSpec(i + 1, p, c) for i, (p, c) in enumerate(zip(ports, controller_ports, strict=True))]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lib: Path | None = None
        self._cluster_id = ""

    @classmethod
    def local(cls, data_dir: Path, log_dir: Path, port: int, nodes: int = 1, **kwargs: object) -> KafkaCluster:
        """Brokers on `port`, `port+1`, ...; controllers on the ports after them (9092/9093 for one node)."""
        ports = [port + i for i in range(nodes)]
        return cls(data_dir, log_dir, ports, [port + nodes + i for i in range(nodes)], **kwargs)  # type: ignore[arg-type]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{n.port}" for n in self.nodes)

    def node(self, node_id: int) -> NodeSpec:
        return self.nodes[node_id - 1]

    def node_dir(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}"

    # -- configuration ---------------------------------------------------------
    def _layout(self) -> dict[str, object]:
        return {"kafka": KAFKA_VERSION.split(".")[0],
                "nodes": [[n.node_id, n.port, n.controller_port] for n in self.nodes]}

    def _load_or_create_id(self) -> str:
        path = self.data_dir / "cluster.json"
        want = self._layout()
        if path.exists():
            saved = json.loads(path.read_text())
            if {k: saved.get(k) for k in want} != want:
                raise KafkaSetupError(f"{self.data_dir} holds a Kafka cluster laid out as {saved['nodes']} "
                                      f"(node, port, controller port), not {want['nodes']}: start it that way "
                                      "or remove that directory")
            return str(saved["cluster_id"])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = new_cluster_id()
        path.write_text(json.dumps({**want, "cluster_id": cluster_id}) + "\n")
        return cluster_id

    def properties(self, node_id: int) -> dict[str, str]:
        n = self.node(node_id)
        count = len(self.nodes)
        voters = ",".join(f"{m.node_id}@{self.host}:{m.controller_port}" for m in self.nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(n.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{self.host}:{n.port},CONTROLLER://{self.host}:{n.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{n.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.node_dir(node_id) / "log"),
            # Kafka's internal topics, replicated as far as the cluster allows.
            "offsets.topic.replication.factor": str(min(3, count)),
            "transaction.state.log.replication.factor": str(min(3, count)),
            "transaction.state.log.min.isr": str(min(2, count)),
            "share.coordinator.state.topic.replication.factor": str(min(3, count)),
            "share.coordinator.state.topic.min.isr": str(min(2, count)),
            "default.replication.factor": str(min(3, count)),
            **self.broker_config,
        }
        return props

    def _write_properties(self, node_id: int) -> Path:
        path = self.node_dir(node_id) / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties(node_id).items()))
        return path

    def _java(self, main: str, node_id: int, *args: str, heap: str) -> list[str]:
        assert self._lib is not None
        logs = self.log_dir / f"kafka-{node_id}"
        logs.mkdir(parents=True, exist_ok=True)
        return [check_java(), f"-Xmx{heap}", "-Xms64m", *JVM_FLAGS,
                f"-Dlog4j2.configurationFile={DIST / 'log4j2.properties'}", f"-Dkafka.logs.dir={logs}",
                "-cp", f"{self._lib}/*", main, *args]

    # -- life cycle ------------------------------------------------------------
    def prepare(self, say: Callable[[str], None] = lambda line: None) -> None:
        """Fetches the jars and formats every node's storage not yet formatted (no process left running)."""
        self._lib = kafka_classpath(self.cache_root, say)
        self._cluster_id = self._load_or_create_id()
        formats = []
        for n in self.nodes:
            props = self._write_properties(n.node_id)
            if (self.node_dir(n.node_id) / "log" / "meta.properties").exists():
                continue
            # `--cluster-id=ID` in one argument: an id starting with "-" (1 in 64) is a flag otherwise.
            cmd = self._java("kafka.tools.StorageTool", n.node_id, "format", f"--cluster-id={self._cluster_id}",
                             "-c", str(props), "--ignore-formatted", heap="256m")
            formats.append((n.node_id, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        for node_id, proc in formats:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise KafkaSetupError(f"formatting Kafka node {node_id} failed: "
                                      f"{out.decode(errors='replace').strip().splitlines()[-1:]}")

    def start_node(self, node_id: int) -> subprocess.Popen[bytes]:
        """Launches one node (after `prepare`); does not wait for it."""
        if self._lib is None:
            self.prepare()
        proc = self.procs.get(node_id)
        if proc is not None and proc.poll() is None:
            return proc
        out_path = self.log_dir / f"kafka-{node_id}" / "stdout.log"
        cmd = self._java("kafka.Kafka", node_id, str(self.node_dir(node_id) / "server.properties"), heap=self.heap)
        with open(out_path, "ab") as out:
            proc = subprocess.Popen([*_pdeathsig_prefix(), *cmd], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[node_id] = proc
        return proc

    def start(self, say: Callable[[str], None] = lambda line: None, timeout: float = 120.0) -> str:
        """Fetches, formats, starts every node and waits until all brokers serve; returns the bootstrap list."""
        self.prepare(say)
        for n in self.nodes:
            self.start_node(n.node_id)
        self.wait_ready(timeout)
        return self.bootstrap

    def wait_ready(self, timeout: float = 120.0, brokers: int | None = None) -> None:
        """Waits until `brokers` (default: every node) are registered and unfenced; raises `ServiceError`."""
        want = len(self.nodes) if brokers is None else brokers
        deadline = time.monotonic() + timeout
        seen = "no answer"
        while time.monotonic() < deadline:
            for node_id, proc in self.procs.items():
                if proc.poll() is not None:
                    raise ServiceError(f"Kafka node {node_id} exited with code {proc.returncode}: "
                                       f"{self._log_tail(node_id)}")
            up = [n for n in self.nodes if n.node_id in self.procs and answers(self.host, n.port, 0.2)]
            if len(up) >= want:
                try:
                    live = self.live_brokers(up[0].port)
                    if len(live) >= want:
                        return
                    seen = f"{len(live)} of {want} brokers registered"
                except Exception as exc:  # kafka-python raises many kinds while a broker boots
                    seen = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise ServiceError(f"Kafka at {self.bootstrap} did not serve within {timeout:g}s ({seen})")

    def live_brokers(self, port: int | None = None) -> list[int]:
        """Ids of the unfenced brokers, as the broker on `port` (default: any running one) sees them."""
        from kafka import KafkaAdminClient

        port = port or next(n.port for n in self.nodes if self.running(n.node_id))
        admin = KafkaAdminClient(bootstrap_servers=f"{self.host}:{port}", request_timeout_ms=5000,
                                 bootstrap_timeout_ms=5000)
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        return sorted(b["broker_id"] for b in cluster["brokers"] if not b.get("is_fenced"))

    def running(self, node_id: int) -> bool:
        proc = self.procs.get(node_id)
        return proc is not None and proc.poll() is None

    def kill(self, node_id: int) -> None:
        """SIGKILL: what a crashed machine looks like to the others."""
        proc = self.procs[node_id]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_node(self, node_id: int, timeout: float = 60.0) -> None:
        """SIGTERM (controlled shutdown: leadership moves first), SIGKILL after `timeout`."""
        self._stop([self.procs[node_id]], timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Stops every node at once, so no broker waits on a controller that already left."""
        self._stop(list(self.procs.values()), timeout)
        self.procs.clear()

    @staticmethod
    def _stop(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _log_tail(self, node_id: int) -> str:
        for name in ("stdout.log", "server.log"):
            path = self.log_dir / f"kafka-{node_id}" / name
            if path.exists():
                lines = [ln for ln in path.read_text(errors="replace").splitlines()
                         if "ERROR" in ln or "Exception" in ln or "Error" in ln]
                if lines:
                    return lines[-1].strip()[:400]
        return f"see {self.log_dir / f'kafka-{node_id}'}"


def main() -> int:
    """`python -m yadtq.ops.kafka_cluster`: fetch the jars now (what `make run BROKER=kafka` does first)."""
    try:
        lib = kafka_classpath(say=print)
        check_java()
    except KafkaSetupError as exc:
        print(f"yadtq: error: {exc}")
        return 1
    print(f"Apache Kafka {KAFKA_VERSION}: {lib}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A local Redis (Valkey) Cluster: N primaries, the 16384 slots split evenly between them.

`yadtq services --redis-cluster 3` starts them (the same server binary as one
Redis, with `cluster-enabled yes`), joins them with CLUSTER MEET, gives each
its range with CLUSTER ADDSLOTSRANGE (what `valkey-cli --cluster create` does,
without needing that tool), waits until every node says `cluster_state:ok`,
and prints the URL every process then uses,
`YADTQ_REDIS_URL=redis+cluster://host:p1,host:p2,host:p3/0`.

Each node keeps its cluster state in `nodes-<port>.conf` in the data folder,
beside its append-only file: started again, the nodes find each other and
their slots from there, and the setup is skipped.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from yadtq.config import Settings
from yadtq.ops.ports import ServiceError, answers
from yadtq.ops.redis_ha import stop_servers
from yadtq.ops.services import redis_address, start_redis
from yadtq.store.cluster import SCHEME, is_cluster_url, parse_cluster_url
from yadtq.store.cluster_admin import form_cluster

NODE_TIMEOUT_MS = 5000


@dataclass
class RedisCluster:
    """The processes of one local cluster of primaries; `stop()` ends them."""

    host: str
    ports: tuple[int, ...]
    data_dir: Path
    log_dir: Path
    # Each process as it starts (a caller may pass its own dict, to stop them after an interrupt).
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{SCHEME}://{','.join(f'{self.host}:{p}' for p in self.ports)}/0"

    def start(self, say: Callable[[str], None] = lambda line: None) -> None:
        """Starts the nodes and forms the cluster; raises ServiceError when a port is taken or it does not form."""
        taken = [p for p in self.ports if answers(self.host, p)]
        if taken:
            raise ServiceError(f"--redis-cluster needs ports {', '.join(map(str, self.ports))} on {self.host} "
                               f"free; {', '.join(map(str, taken))} answer(s): stop what runs there")
        for port in self.ports:
            self._start_node(port)
        self._form()
        pids = ", ".join(str(self.procs[f"redis-cluster-{p}"].pid) for p in self.ports)
        say(f"redis: started a cluster of {len(self.ports)} primaries at {self.host}:"
            f"{','.join(map(str, self.ports))} (pid {pids}), slots split evenly, append-only files in "
            f"{self.data_dir}/")

    def keeps(self, name: str) -> bool:
        """False: no process of a cluster is started again (`yadtq services` reports it exited)."""
        return False

    def revive(self) -> None:
        """Nothing to do: a cluster of primaries alone has no spare to restore (a dead node's slots
        stop serving until it is back; `yadtq services` then reports it exited)."""

    def restart_node(self, port: int, down_for: float = 1.0) -> None:
        """kill -9 of the node at `port`, and a start again on its append-only file and
        `nodes-<port>.conf` after `down_for` s; returns once every node says `cluster_state:ok`
        (a restarted primary answers CLUSTERDOWN for its first seconds). For chaos runs."""
        proc = self.procs.pop(f"redis-cluster-{port}")
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        time.sleep(down_for)
        self._start_node(port)
        self._form()

    def _start_node(self, port: int) -> None:
        started: dict[str, subprocess.Popen[bytes]] = {}
        try:
            start_redis(self.host, port, self.data_dir, self.log_dir, started, extra_args=(
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS)))
        finally:  # recorded even when it never answered, so stop() ends it
            if "redis" in started:
                self.procs[f"redis-cluster-{port}"] = started["redis"]

    def _form(self) -> None:
        try:
            form_cluster(self.host, self.ports)
        except TimeoutError as exc:
            raise ServiceError(str(exc)) from None

    def stop(self) -> None:
        stop_servers(self.procs, list(self.procs.values()))


def start_redis_cluster(settings: Settings, started: dict[str, subprocess.Popen[bytes]],
                        say: Callable[[str], None], primaries: int = 3) -> RedisCluster:
    """What `yadtq services --redis-cluster N` starts (its `url` is the one every process uses).

    With a `redis+cluster://` YADTQ_REDIS_URL naming N nodes, the nodes take its ports;
    otherwise the first takes the plain URL's port and the others the ports just above it.
    """
    if is_cluster_url(settings.redis_url) and len(parse_cluster_url(settings.redis_url).nodes) == primaries:
        target = parse_cluster_url(settings.redis_url)
        host, ports = target.nodes[0][0], tuple(p for _, p in target.nodes)
    else:
        host, first = redis_address(settings)
        ports = tuple(first + i for i in range(primaries))
    if primaries < 1:
        raise ServiceError("--redis-cluster needs at least 1 primary")
    cluster = RedisCluster(host, ports, Path(settings.data_dir), Path(settings.log_dir), procs=started)
    cluster.start(say)
    return cluster

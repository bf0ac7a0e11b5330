"""Redis Cluster: `yadtq services --redis-cluster 3` starts a 3-primary cluster a client reaches
through the URL it prints. The URL's parsing and the shard function: tests/unit/test_redis_cluster_keys.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

from yadtq.config import Settings
from yadtq.ops.ports import answers, free_cluster_port, free_port
from yadtq.store.cluster import parse_cluster_url, shard_prefix
from yadtq.store.connection import connect_redis


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # see test_services._interruptible


def test_services_starts_a_three_primary_cluster_a_client_reaches(tmp_path: Path) -> None:
    kport, ports = free_port(), [free_cluster_port() for _ in range(3)]
    nodes = ",".join(f"127.0.0.1:{p}" for p in ports)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")},
           "PYTHONPATH": str(ROOT), "YADTQ_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}",
           "YADTQ_REDIS_URL": f"redis+cluster://{nodes}/0", "YADTQ_DATA_DIR": str(tmp_path / "data"),
           "YADTQ_LOG_DIR": str(tmp_path / "logs")}
    proc = subprocess.Popen([sys.executable, "-m", "yadtq", "services", "--redis-cluster", "3"], env=env,
                            cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_interruptible)
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "services up" in line or "error" in line.lower():
            break
    out = "".join(seen)
    assert "services up" in out, out
    url = next(line.split("=", 1)[1].strip() for line in seen if line.startswith("YADTQ_REDIS_URL="))
    assert url == f"redis+cluster://{nodes}/0"
    try:
        client = connect_redis(Settings(redis_url=url))
        # Every node serves a third of the slots; a key of each shard lands somewhere and reads back.
        shards = parse_cluster_url(url).shards
        for n in range(shards):
            client.set(f"{shard_prefix('t:', n)}probe", str(n))
        assert [client.get(f"{shard_prefix('t:', n)}probe") for n in range(shards)] == [str(n) for n in range(shards)]
        served = {addr.rsplit(":", 1)[1].split("@")[0] for addr, node in client.cluster_nodes().items()
                  if "master" in node["flags"] and node["slots"]}
        assert served == {str(p) for p in ports}, client.cluster_nodes()
        # A Lua step over several keys of one shard runs on one node (the hash tag keeps them on one slot).
        script = client.register_script("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])")
        assert script(keys=[f"{shard_prefix('t:', 3)}a", f"{shard_prefix('t:', 3)}b"], args=["x"]) == 1
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + rest
    assert not any(answers("127.0.0.1", p) for p in ports)

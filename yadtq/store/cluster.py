"""Redis (or Valkey) Cluster: the `redis+cluster://` URL, the client, and which shard a task id is on.

    redis+cluster://[[user]:password@]host1:port1,host2:port2,...[/0][?shards=16]

The hosts are seed nodes of one cluster (any one that answers is enough: the
client learns the rest from CLUSTER SLOTS). A cluster has database 0 only.
`shards` is how many shards task ids are spread over (docs/redis-cluster.md):
fixed for the data's lifetime, since changing it moves ids.

A shard is a key prefix with a hash tag, `<prefix>{s<n>}:`: every key a
per-task Lua step touches sits under its task's shard prefix, so the step
touches one slot. Global state sits under `<prefix>{g}:`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote

import redis
from redis.cluster import ClusterNode, RedisCluster

from yadtq.errors import ConfigError
from yadtq.store.sentinel import host_port

SCHEME = "redis+cluster"
URL_FORM = f"{SCHEME}://[[user]:password@]host:port[,host:port...][/0][?shards=16]"
DEFAULT_SHARDS = 16
# A workflow member's id is `<workflow id>.<node>`; it shards with its workflow (yadtq.store.workflows).
WORKFLOW_ID_PREFIX = "wf-"
# A periodic schedule's slot task id starts so (yadtq.store.schedules.slot_task_id): all of them, and the
# schedules themselves, sit on one shard, so firing a slot (the schedule and its task) is one slot's step.
PERIODIC_ID_PREFIX = "periodic:"


@dataclass(frozen=True)
class ClusterTarget:
    """What a `redis+cluster://` URL names."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    shards: int = DEFAULT_SHARDS


def is_cluster_url(url: str) -> bool:
    return url.lower().startswith(f"{SCHEME}://")


def _bad(why: str) -> ConfigError:
    # Never quote the URL: it may hold a password.
    return ConfigError(f"YADTQ_REDIS_URL is not a valid Redis Cluster URL ({why}); expected {URL_FORM}")


def _host_port(part: str) -> tuple[str, int]:
    node = host_port(part)
    if node is None:
        raise _bad(f"each node is host:port, got {part!r}")
    return node


def parse_cluster_url(url: str) -> ClusterTarget:
    """The seed nodes, credentials and shard count of `url`; raises ConfigError when malformed."""
    if not is_cluster_url(url):
        raise _bad(f"the scheme must be {SCHEME}")
    rest = url[len(SCHEME) + 3:]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) if has_password else None
    if not hosts:
        raise _bad("no node address")
    nodes = tuple(_host_port(p) for p in hosts.split(",") if p)
    if path.strip("/") not in ("", "0"):
        raise _bad("a cluster has database 0 only")
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - {"shards"}
    if unknown:
        raise _bad(f"unknown option(s) {', '.join(sorted(unknown))}")
    raw = options.get("shards", [str(DEFAULT_SHARDS)])[-1]
    if not raw.isdigit() or not 1 <= int(raw) <= 1024:
        raise _bad(f"shards must be a whole number from 1 to 1024, got {raw!r}")
    return ClusterTarget(nodes=nodes, username=username, password=password, shards=int(raw))


def cluster_client(target: ClusterTarget, **connection: Any) -> redis.Redis:
    """A RedisCluster client of `target`; `connection` holds the per-node connection options.

    Typed as `redis.Redis` because the rest of YADTQ names its client so: the cluster
    client answers the same commands for keys of one slot (the only kind the key scheme makes).
    """
    connection.pop("retry_on_error", None)  # RedisCluster retries on its own (cluster_error_retry_attempts)
    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],  # type: ignore[no-untyped-call]
                          username=target.username, password=target.password, **connection)
    return cast("redis.Redis", client)


def shard_key(task_id: str) -> str:
    """The part of `task_id` its shard is derived from: a workflow member's workflow id, the periodic
    prefix for a schedule's task, else the id."""
    if task_id.startswith(PERIODIC_ID_PREFIX):
        return PERIODIC_ID_PREFIX
    if task_id.startswith(WORKFLOW_ID_PREFIX) and "." in task_id:
        return task_id.split(".", 1)[0]
    return task_id


def shard_of(task_id: str, shards: int) -> int:
    """Which of `shards` shards holds `task_id` (stable across processes and Python versions)."""
    return zlib.crc32(shard_key(task_id).encode()) % shards


def shard_prefix(prefix: str, shard: int) -> str:
    """The key prefix of shard `shard`: its hash tag keeps every key under it on one slot."""
    return f"{prefix}{{s{shard}}}:"


def global_prefix(prefix: str) -> str:
    """The key prefix of the cluster-wide state (workers, schedules, series): one fixed slot."""
    return f"{prefix}{{g}}:"

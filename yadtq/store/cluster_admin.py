"""Forming a local Redis Cluster out of fresh nodes (yadtq.ops.redis_cluster starts the processes).

What `valkey-cli --cluster create` does for primaries alone, without needing that
tool: each node gets its range of slots (CLUSTER ADDSLOTSRANGE), the first meets
the others (CLUSTER MEET), and the gossip spreads the rest.
"""

from __future__ import annotations

import time
from typing import Any, cast

import redis

SLOTS = 16384


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """The first and last slot of each primary: 16384 split as evenly as whole numbers allow."""
    if primaries < 1:
        raise ValueError("a cluster needs at least 1 primary")
    bounds = [SLOTS * i // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


def _info(client: redis.Redis) -> dict[str, Any]:
    return cast("dict[str, Any]", client.execute_command("CLUSTER INFO"))  # type: ignore[no-untyped-call]


def _ok(client: redis.Redis, nodes: int) -> bool:
    # ok once every node knows every other and sees all the slots served
    info = _info(client)
    return (info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == nodes
            and int(info.get("cluster_slots_assigned", 0)) == SLOTS)


def form_cluster(host: str, ports: tuple[int, ...], timeout: float = 30.0) -> None:
    """Makes the nodes at `ports` one cluster of primaries (unless they already are: a restart
    on their `nodes-<port>.conf`) and returns once each says `cluster_state:ok`; raises TimeoutError."""
    clients = [redis.Redis(host=host, port=p, socket_timeout=5.0, decode_responses=True) for p in ports]
    try:
        first = clients[0]
        if int(_info(first).get("cluster_slots_assigned", 0)) == 0:
            for client, (lo, hi) in zip(clients, slot_ranges(len(ports)), strict=True):
                client.execute_command("CLUSTER ADDSLOTSRANGE", lo, hi)  # type: ignore[no-untyped-call]
            for port in ports[1:]:
                first.execute_command("CLUSTER MEET", host, port)  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + timeout
        while not all(_ok(c, len(ports)) for c in clients):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Redis cluster at {host}:{ports[0]} did not reach cluster_state:ok "
                                   f"within {timeout:g}s")
            time.sleep(0.1)
    finally:
        for client in clients:
            client.close()

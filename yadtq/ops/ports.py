"""Ports on this machine: whether something answers there, a free one, and the error a service start raises."""

from __future__ import annotations

import socket

from yadtq.errors import YADTQError


class ServiceError(YADTQError):
    """An embedded service would not start."""


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


# A Redis Cluster node also listens on its port + 10000 (the cluster bus).
CLUSTER_BUS_OFFSET = 10000


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (for test and demo clusters)."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET >= 65536:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port

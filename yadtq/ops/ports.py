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


# Ports this process has handed out: the kernel may offer a port again as soon as the probing socket
# closes, and two services given the same "free" port would fight over it.
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


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

"""Test tasks that record every execution in a Redis ledger (the kill -9 proof)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import redis

from yadtq import Retry, current_task, task
from yadtq.config import Settings
from yadtq.store.cluster import is_cluster_url
from yadtq.store.connection import REDIS_UNAVAILABLE, connect_redis
from yadtq.store.replication import ReplicaAck
from yadtq.store.sentinel import is_sentinel_url

_client: redis.Redis | None = None
_ack: ReplicaAck | None = None
# Idempotent: a write whose reply a failover cut off is sent again, and must not read as a second run.
_RPUSH = "if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end return redis.call('RPUSH', KEYS[1], ARGV[1])"


def ledger() -> redis.Redis:
    global _client
    if _client is None:
        url = os.environ["YADTQ_REDIS_URL"]
        _client = connect_redis(Settings(redis_url=url)) if is_sentinel_url(url) or is_cluster_url(url) \
            else redis.Redis.from_url(url, decode_responses=True)
    return _client


def _record(key: str, line: str) -> None:
    """Appends `line` to the ledger list `key`. Behind Sentinel (tests/system/test_redis_ha.py) the line
    waits for a replica as a worker's step does, so a failover cannot lose it (and hide a second run),
    and a write that meets the failover is tried again. Without Sentinel a write that meets a lost
    connection is tried again too, and every write is guarded (a line already there is not added
    again): a kill -9 of Redis during its fsync, or a host cut off from Redis, can make the line
    durable but cut off its reply, and redis-py itself sends a command again after a lost connection;
    a second copy of the line would read as a second run."""
    global _ack
    if not is_sentinel_url(os.environ["YADTQ_REDIS_URL"]):
        # REDIS_UNAVAILABLE: on a cluster also CLUSTERDOWN, while a primary restarts
        _again(lambda: ledger().eval(_RPUSH, 1, key, line))
        return
    if _ack is None:
        _ack = ReplicaAck(1, 2000)
    deadline = time.monotonic() + 30
    while True:
        try:
            _ack.call(ledger(), ledger().register_script(_RPUSH), [key], [line])
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _again(write: Callable[[], object], patience: float = 60.0) -> None:
    """`write` until Redis answers (refused, cut off or loading meanwhile), for at most `patience` s."""
    deadline = time.monotonic() + patience
    while True:
        try:
            write()
            return
        except REDIS_UNAVAILABLE:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@task
def ledger_add(a: float, b: float, pause: float = 0.0) -> float:
    """Writes `<task id> <pid> <attempt>` to the ledger, then works for `pause` seconds."""
    ctx = current_task()
    assert ctx is not None
    _record(os.environ["YADTQ_PREFIX"] + "ledger", f"{ctx.task_id} {os.getpid()} {ctx.attempt}")
    if pause:
        time.sleep(pause)
    # The run's end, with its wall time: a run of a killed process with no end was cut off mid-run.
    _record(os.environ["YADTQ_PREFIX"] + "ledger_end", f"{ctx.task_id} {os.getpid()} {ctx.attempt} {time.time()}")
    return a + b


def read_ledger(r: redis.Redis, prefix: str) -> dict[str, list[tuple[int, int]]]:
    """{task id: [(pid, attempt), ...]} in execution order."""
    out: dict[str, list[tuple[int, int]]] = {}
    for line in r.lrange(prefix + "ledger", 0, -1):
        tid, pid, attempt = line.split()
        out.setdefault(tid, []).append((int(pid), int(attempt)))
    return out


@task
def ledger_block(seconds: float) -> float:
    """One long blocking call: a time limit cannot interrupt it, only end its worker."""
    ctx = current_task()
    assert ctx is not None
    ledger().rpush(os.environ["YADTQ_PREFIX"] + "ledger", f"{ctx.task_id} {os.getpid()} {ctx.attempt}")
    time.sleep(seconds)
    return seconds


@task
def ledger_die(how: str) -> None:
    """Ends its own worker process: os._exit, a segfault, or a memory blow-up."""
    ctx = current_task()
    assert ctx is not None
    ledger().rpush(os.environ["YADTQ_PREFIX"] + "ledger", f"{ctx.task_id} {os.getpid()} {ctx.attempt}")
    if how == "exit":
        os._exit(1)
    if how == "segv":
        import ctypes
        ctypes.string_at(0)
    if how == "memory":
        hog = [bytearray(64 << 20) for _ in range(10_000)]  # past the worker's address-space limit
        raise AssertionError(f"allocated {len(hog)} blocks")


@task
def ledger_slow_retry(seconds: float) -> str:
    """The first attempt works `seconds`, then asks for a retry; the next one succeeds."""
    ctx = current_task()
    assert ctx is not None
    ledger().rpush(os.environ["YADTQ_PREFIX"] + "ledger", f"{ctx.task_id} {os.getpid()} {ctx.attempt}")
    if ctx.attempt == 1:
        time.sleep(seconds)
        raise Retry("once more", delay=0.2)
    return "done"

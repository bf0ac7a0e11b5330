"""The one loader of the Lua scripts: every check-then-act on a task record is atomic.

Scripts live in yadtq/store/lua/*.lua, each with a header naming its KEYS, ARGV
and reply; the reply's typed decoder sits beside the code that calls it
(yadtq.store.replies, yadtq.store.claim_replies). The worker's whole step (store
outcomes, then claim) is one call of `step.lua` (see yadtq.store.claims).

A script may include a library of yadtq/store/lua/lib/ with a line `--! include NAME`
(the workflow engine is one, shared by every script that ends a task).

`bind(client, name)` returns redis-py's `Script`: it runs by EVALSHA (the text
crosses the wire once per server, not on every call) and loads the text again
when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH), in pipelines too.

The common path (queued, processing, success) writes nothing but the record
and the status indexes: its history is the record's timestamps. Each task's
`events:<id>` list holds only what they cannot tell: retries, failures,
reclaims after a cut-off run, rejections, requeues.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from redis.asyncio import Redis as AsyncRedisClient
from redis.commands.core import AsyncScript, Script

from yadtq.store.connection import RedisClient

LUA_DIR = Path(__file__).resolve().parent / "lua"
# Every script YADTQ runs; `bind` refuses any other name.
NAMES: frozenset[str] = frozenset(p.stem for p in LUA_DIR.glob("*.lua"))


@functools.cache
def source(name: str) -> str:
    """The text of yadtq/store/lua/<name>.lua."""
    if name not in NAMES:
        raise ValueError(f"no Lua script {name!r}; one of {', '.join(sorted(NAMES))}")
    text = (LUA_DIR / f"{name}.lua").read_text()
    return re.sub(r"^--! include (\w+)$", lambda m: (LUA_DIR / "lib" / f"{m[1]}.lua").read_text(), text,
                  flags=re.MULTILINE)


def bind(client: RedisClient, name: str) -> Script:
    """Script `name` on `client`: called by EVALSHA, loaded again on NOSCRIPT.

    Call it as `script(keys=[...], args=[...])`, or with `client=pipe` to queue it
    in a pipeline; decode the reply with the script's decoder.
    """
    return client.register_script(source(name))


def bind_async(client: AsyncRedisClient, name: str) -> AsyncScript:
    """`bind` for redis.asyncio (yadtq.store.async_backend): `await script(keys=..., args=...)`."""
    script: AsyncScript = client.register_script(source(name))
    return script

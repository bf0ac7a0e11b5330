"""Waiting for replicas: a step whose outcomes must survive the loss of the primary.

Redis replicates asynchronously: the primary answers a write before any replica
has it, so an outcome stored just before the primary dies can be missing on the
replica Sentinel promotes, and a task that finished would run again. Where
that matters (the worker's step: its outcomes and its claims) the script is
followed by `WAIT N timeout` in the same pipeline: one round trip, answered once
N replicas hold everything written before it, or at the timeout. N is at most
the replicas the primary has online (asked every few seconds, and on every
call while it has none, so a replica that comes back is waited for once in sync):
with none (the replica is down, still receiving its first copy, or was just
promoted and has none of its own yet) a step does not wait, and a warning says
that writes are on the primary only.

Only with a `redis+sentinel://` URL (see yadtq.store.sentinel for its
`replicas_ack` and `ack_timeout_ms` options): a lone server has no replica to wait for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import Script
from redis.exceptions import ConnectionError, NoScriptError, RedisError, ResponseError

from yadtq.config import Settings
from yadtq.store.connection import RedisClient
from yadtq.store.sentinel import is_sentinel_url, online_replicas, parse_sentinel_url

log = logging.getLogger(__name__)
WARN_EVERY = 30.0  # seconds between two "unreplicated" warnings of one waiter
CHECK_EVERY = 5.0  # seconds between two questions to the primary: how many replicas are connected?


@dataclass
class ReplicaAck:
    """Runs a script, then waits for `replicas` replicas, at most `timeout_ms`."""

    replicas: int
    timeout_ms: int
    unreplicated: int = 0  # calls whose replicas did not all answer in time (or had none to wait for)
    _warned_at: float = 0.0
    _replicas_seen: int = 0
    _checked_at: float = 0.0

    @classmethod
    def for_settings(cls, settings: Settings) -> ReplicaAck | None:
        """The wait `settings.redis_url` asks for; None for a plain URL or `replicas_ack=0`."""
        if not is_sentinel_url(settings.redis_url):
            return None
        target = parse_sentinel_url(settings.redis_url)
        return cls(target.replicas_ack, target.ack_timeout_ms) if target.replicas_ack else None

    def call(self, client: RedisClient, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """`script(keys, args)`'s reply, once replicated (or the wait timed out)."""
        try:
            want = min(self.replicas, self._connected(client))
            if want == 0:
                # No replica to wait for (it is down, or the primary is a fresh one after a failover):
                # WAIT would cost its whole timeout on every step for nothing.
                reply = script(keys=keys, args=args, client=client)
                self._count(0)
                return reply
            return self._call_and_wait(client, script, keys, args, want)
        except RedisError:
            self._checked_at = 0.0  # maybe a failover: ask the (new) primary again next time
            raise

    def _call_and_wait(self, client: RedisClient, script: Script, keys: Sequence[Any], args: Sequence[Any],
                       want: int) -> Any:
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", want, self.timeout_ms)  # type: ignore[no-untyped-call]
            reply, acked = pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and attempt == 0:
                # A new primary (after a failover) or a restart: the script is not loaded yet.
                client.script_load(script.script)
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acked, ResponseError) and "replica" in str(acked):
                # A replica answered (one in a failover's middle, the connection made just before its
                # promotion): an outage, so the caller waits, and its next connection asks the Sentinels.
                raise ConnectionError(f"Redis answered as a replica ({acked})") from acked
            if isinstance(acked, Exception):
                raise acked
            self._count(int(acked))
            if int(acked) < want:
                self._checked_at = 0.0  # a replica gone? ask again before the next wait
            return reply
        raise AssertionError("unreachable")

    def _connected(self, client: RedisClient) -> int:
        """The primary's replicas online (in sync), asked at most every CHECK_EVERY seconds."""
        now = time.monotonic()
        # With none seen, ask on every call: a replica that comes back must be waited for at once
        # (this costs a round trip per step only while there is no replica).
        if self._replicas_seen == 0 or now - self._checked_at >= CHECK_EVERY:
            self._replicas_seen = online_replicas(client.info("replication"))
            self._checked_at = now
        return self._replicas_seen

    def _count(self, acked: int) -> None:
        if acked >= min(self.replicas, self._replicas_seen) > 0:
            return
        self.unreplicated += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            why = (f"{acked} of {self.replicas} replica(s) acknowledged within {self.timeout_ms} ms"
                   if self._replicas_seen else "the primary has no replica in sync")
            log.warning("Redis: %s; writes are on the primary only until a replica catches up "
                        "(%d such steps so far)", why, self.unreplicated)


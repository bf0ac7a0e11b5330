"""A worker's own Redis connection for its claim/complete steps, pipelined.

A finished task's outcome is written to the socket at once (`send`), but its
reply is read later (`drain`), so a stream of short tasks costs one send per
task instead of a round trip. Callers drain before anything that depends on
the outcome being stored, above all before committing offsets. A claim's
reply is needed before its task runs, so `call` sends and drains.

If the connection breaks, every step whose reply was not read is sent again
once Redis answers: a completion already applied then reads back "fenced", a
claim already applied is taken over by the same worker. Neither runs a task
twice or loses an outcome.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)


class StepChannel:
    def __init__(self, client: redis.Redis, script: str, on_lost: Callable[[Exception], None]) -> None:
        self.client = client
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self.on_lost = on_lost
        self.pending: deque[tuple[list[Any], Any]] = deque()
        self.conn: Any = None

    def _connect(self) -> Any:
        if self.conn is None:
            conn = self.client.connection_pool.make_connection()
            conn.connect()
            conn.send_command("SCRIPT", "LOAD", self.script)
            conn.read_response()
            for args, _ in self.pending:  # a new connection: send again what was unanswered
                conn.send_command("EVALSHA", self.sha, 0, *args)
            self.conn = conn
        return self.conn

    def _reset(self, exc: Exception) -> None:
        if self.conn is not None:
            self.conn.disconnect()
            self.conn = None
        self.on_lost(exc)

    def send(self, args: list[Any], context: Any) -> None:
        """Writes one step; its reply comes back from `drain` with `context`."""
        try:
            conn = self._connect()
            self.pending.append((args, context))
            conn.send_command("EVALSHA", self.sha, 0, *args)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if not self.pending or self.pending[-1][0] is not args:
                self.pending.append((args, context))
            self._reset(exc)  # the next drain sends everything pending again

    def drain(self) -> list[tuple[Any, Any]]:
        """Reads the reply of every step sent: [(reply, context), ...] in order.

        Waits out a Redis restart; raises only for a reply that is an error
        other than a lost connection (a bug, not a fault to retry).
        """
        out: list[tuple[Any, Any]] = []
        delay = 0.2
        while True:
            try:
                conn = self._connect()
                while self.pending:
                    reply = conn.read_response()
                    out.append((reply, self.pending.popleft()[1]))
                return out
            except redis.exceptions.NoScriptError as exc:  # SCRIPT FLUSH: reload, send again
                self._reset(exc)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._reset(exc)
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def call(self, args: list[Any], context: Any = None) -> tuple[list[tuple[Any, Any]], Any]:
        """Sends one step and drains: (earlier replies with contexts, this step's reply)."""
        self.send(args, context)
        replies = self.drain()
        return replies[:-1], replies[-1][0]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.disconnect()
            self.conn = None

"""Commands to one worker (pause, resume, stop, and cancel a running task) over Redis.

The dashboard, the HTTP API and the CLI send them (guarded like destructive
actions); a worker takes its pending commands about twice a second. A cancel
order (`cancel:<fence>:<task id>`) is queued by cancel.lua itself, in the same
step that cancels the task's record, for the worker that runs it. Redis, not
the tasks topic, carries them: a command must reach one named worker, and
anybody who can write to the topic must not be able to stop the farm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yadtq.store.keys import Keys

if TYPE_CHECKING:  # the CLI imports this module for the command names: Redis only when one is sent
    from yadtq.store.connection import RedisClient
    from yadtq.store.keyspace import KeySpace

COMMANDS = ("pause", "resume", "stop")
CANCEL = "cancel:"  # + fence + ":" + task id (written by cancel.lua)
_KEPT = 100


def cancel_order(command: str) -> tuple[str, str] | None:
    """(task id, fence) of a cancel order; None for any other command."""
    if not command.startswith(CANCEL):
        return None
    fence, _, task_id = command.removeprefix(CANCEL).partition(":")
    return (task_id, fence) if task_id else None


def send_command(client: RedisClient, keys: Keys, worker: str, command: str) -> None:
    """Queues `command` for `worker`; raises ValueError for an unknown command."""
    if command not in COMMANDS:
        raise ValueError(f"unknown worker command {command!r}; one of {', '.join(COMMANDS)}")
    pipe = client.pipeline(transaction=True)
    pipe.rpush(keys.control(worker), command)
    pipe.ltrim(keys.control(worker), -_KEPT, -1)
    pipe.execute()


def take_commands(client: RedisClient, keys: Keys, worker: str, space: KeySpace | None = None) -> list[str]:
    """The commands (and cancel orders) queued for `worker`, oldest first, removed as they are read.

    On a Redis Cluster (`space` sharded) a cancel order sits on its task's shard (cancel.lua queues it
    in the step that cancels the record): each shard's list is popped too, one pipeline per primary (sent at once).
    """
    pipe = client.pipeline(transaction=True)
    pipe.lrange(keys.control(worker), 0, _KEPT - 1)
    pipe.delete(keys.control(worker))
    got, _ = pipe.execute()
    if space is not None and space.sharded:
        from yadtq.store.batch import Batch  # here: see the imports above
        batch = Batch(client)
        for k in space.shards:
            batch.on(k.control(worker)).lpop(k.control(worker), _KEPT)  # atomic: an order pushed meanwhile stays
        got = [*got, *(c for popped in batch.execute() if popped for c in popped)]
    return [c for c in got if c in COMMANDS or c.startswith(CANCEL)]

"""Commands to one worker (pause, resume, stop) over Redis.

Only the dashboard and the HTTP API send them (guarded like destructive
actions); a worker takes its pending commands about twice a second. Redis, not
the tasks topic, carries them: a command must reach one named worker, and
anybody who can write to the topic must not be able to stop the farm.
"""

from __future__ import annotations

from yadtq.store.connection import RedisClient
from yadtq.store.keys import Keys

COMMANDS = ("pause", "resume", "stop")
_KEPT = 100


def send_command(client: RedisClient, keys: Keys, worker: str, command: str) -> None:
    """Queues `command` for `worker`; raises ValueError for an unknown command."""
    if command not in COMMANDS:
        raise ValueError(f"unknown worker command {command!r}; one of {', '.join(COMMANDS)}")
    pipe = client.pipeline(transaction=True)
    pipe.rpush(keys.control(worker), command)
    pipe.ltrim(keys.control(worker), -_KEPT, -1)
    pipe.execute()


def take_commands(client: RedisClient, keys: Keys, worker: str) -> list[str]:
    """The commands queued for `worker`, oldest first, removed as they are read."""
    pipe = client.pipeline(transaction=True)
    pipe.lrange(keys.control(worker), 0, _KEPT - 1)
    pipe.delete(keys.control(worker))
    got, _ = pipe.execute()
    return [c for c in got if c in COMMANDS]

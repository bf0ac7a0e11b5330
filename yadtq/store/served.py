"""What live workers serve: each worker announces its tasks' signatures; clients check calls against them.

One hash, `Keys.served`: worker name -> JSON `{"incarnation": ..., "tasks": {name: spec}}`
(specs as in `yadtq.task.signatures`). An entry counts only while its worker's name lease
(`Keys.worker_name`, renewed with every heartbeat) is held by the same incarnation, so a worker
that died stops counting when its lease ends, with no timer of its own. Readers drop entries
whose lease is gone; a clean stop withdraws its entry at once.
"""

from __future__ import annotations

import json
from typing import Any

from yadtq.store.connection import RedisClient, RedisError, decoded_hash
from yadtq.store.keys import Keys


def served_key(keys: Keys) -> str:
    return f"{keys.prefix}served"


def announce(client: RedisClient, keys: Keys, worker: str, incarnation: str, tasks: dict[str, Any]) -> None:
    """Called once the worker holds its name, before it serves."""
    entry = json.dumps({"incarnation": incarnation, "tasks": tasks}, separators=(",", ":"))
    client.hset(served_key(keys), worker, entry)


def withdraw(client: RedisClient, keys: Keys, worker: str, incarnation: str) -> None:
    """Removes the worker's entry if it is still this incarnation's (a clean stop). With Redis
    away it stays, and stops counting once the name lease ends."""
    try:
        raw = client.hget(served_key(keys), worker)
        if raw and json.loads(raw).get("incarnation") == incarnation:
            client.hdel(served_key(keys), worker)
    except RedisError:
        pass


def live_served(client: RedisClient, keys: Keys) -> dict[str, dict[str, Any]]:
    """worker -> {task name: spec}, of workers whose name lease is held by the announcing incarnation."""
    entries = served_entries(decoded_hash(client.hgetall(served_key(keys))))
    if not entries:
        return {}
    pipe = client.pipeline(transaction=False)
    for worker in entries:
        pipe.hget(keys.worker_name(worker), "incarnation")
    live, gone = split_live(entries, pipe.execute())
    if gone:  # their leases ended (killed workers); a new claim of the name announces afresh
        client.hdel(served_key(keys), *gone)
    return live


def served_entries(raw: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The readable announcements of the served hash (worker -> {"incarnation", "tasks"})."""
    entries: dict[str, dict[str, Any]] = {}
    for worker, text in raw.items():
        try:
            entry = json.loads(text)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("tasks"), dict):
            entries[worker] = entry
    return entries


def split_live(entries: dict[str, dict[str, Any]], holders: list[Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(worker -> tasks of the live announcers, workers whose name lease is gone), given each entry's
    name-lease holder in order."""
    live, gone = {}, []
    for (worker, entry), holder in zip(entries.items(), holders, strict=True):
        if holder is not None and str(holder) == entry.get("incarnation"):
            live[worker] = entry["tasks"]
        elif holder is None:
            gone.append(worker)
    return live, gone

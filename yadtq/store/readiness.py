"""Whether any worker serves yet, told from the worker registry (the monitor keeps it from heartbeats).

A new farm spends its first seconds joining the consumer group: tasks submitted then
wait in the broker. Clients, the API and the dashboard say so instead of only waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from yadtq.store.live_state import ALIVE


def waiting_note(workers: Iterable[dict[str, Any]]) -> str | None:
    """Why no task can start now, when the registry says so; None when a live worker owns
    partitions, or when the registry is empty (no monitor has written it: nothing to tell)."""
    known = list(workers)
    if not known:
        return None
    alive = [w for w in known if w.get("status") == ALIVE]
    if any(w.get("partitions") for w in alive):
        return None
    joining = sorted(str(w.get("name")) for w in alive if w.get("state") == "joining")
    if joining:
        return (f"workers are joining the group ({', '.join(joining)}): tasks wait until one is given "
                "partitions, usually a few seconds")
    if not alive:
        return "no worker is alive: tasks wait in the queue until one starts (yadtq worker)"
    if all(w.get("state") == "standby" for w in alive):
        return "only standby workers are alive: they take partitions when a worker leaves"
    return None

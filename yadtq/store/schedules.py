"""Periodic schedules in Redis: definitions, their last and next slots, and the fence that fires each slot once.

Per schedule a hash `schedule:<name>` (definition JSON, version, last slot, last run and task,
counts) and a member of the sorted set `schedules`, scored by the Redis time a scheduler
should look at it next. Every change is one Lua call (schedule_define.lua, schedule_fire.lua):

* `define` adds or replaces a definition, never firing the slot under way;
* `fire` moves the schedule's last slot on only if the slot is newer (compare and set), and
  in the same call writes the slot's task record under an id made of (schedule, slot) and
  parks it in the retries set armed a few seconds ahead. The caller publishes it and
  confirms (`confirm`, untake.lua); a caller that dies before leaves it to the parked
  retries path of any worker (`ParkedRetries`), which publishes it once armed.

All times are Redis server time (`TIME`, or read with `now()`), never a local clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from yadtq.config import Settings
from yadtq.errors import ConfigError
from yadtq.store.batch import Batch
from yadtq.store.cluster import PERIODIC_ID_PREFIX
from yadtq.store.connection import RedisClient
from yadtq.store.keyspace import KeySpace
from yadtq.store.scripts import bind
from yadtq.task.messages import TaskMessage, body_digest
from yadtq.task.periodic import ScheduleSpec
from yadtq.task.status import Status

log = logging.getLogger(__name__)
# Seconds a fired slot's task waits parked before the parked-retries path publishes it, should
# the scheduler that fired it die before it publishes (it confirms far sooner when alive).
HOLD = 10.0


def slot_task_id(name: str, slot: float) -> str:
    """The task id of a schedule's slot: the same in every scheduler, so a slot is one task."""
    return f"{PERIODIC_ID_PREFIX}{name}:{datetime.fromtimestamp(slot, UTC).strftime('%Y%m%dT%H%M%SZ')}"


@dataclass(frozen=True)
class ScheduleState:
    """A schedule as stored: its spec, version, and its runs (Redis times; None: not yet)."""

    spec: ScheduleSpec
    version: str
    last_slot: float
    last_run: float | None
    last_task: str | None
    next_run: float
    fired: int
    skipped: int
    origin: str
    created_at: float | None

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"name": s.name, "task": s.task, "every": s.every, "cron": s.cron, "args": list(s.args),
                "kwargs": s.kwargs, "catch_up": s.catch_up, "next_run": self.next_run, "last_run": self.last_run,
                "last_slot": self.last_slot, "last_task": self.last_task, "fired": self.fired,
                "skipped": self.skipped, "origin": self.origin}

    @classmethod
    def from_hash(cls, h: dict[str, str], now: float) -> ScheduleState:
        spec = ScheduleSpec.from_definition(h["name"], h["definition"])
        last_slot = float(h.get("last_slot") or 0)
        return cls(spec, h.get("version", ""), last_slot, _num(h.get("last_run")), h.get("last_task") or None,
                   spec.next_after(max(now, last_slot)), int(h.get("fired") or 0), int(h.get("skipped") or 0),
                   h.get("origin", ""), _num(h.get("created_at")))


@dataclass(frozen=True)
class Fired:
    """A slot's task recorded and parked: publish `message`, then `confirm` with `armed`."""

    schedule: str
    slot: float
    message: TaskMessage
    armed: str


def _num(raw: str | None) -> float | None:
    return float(raw) if raw not in (None, "") else None


class ScheduleStore:
    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        # On a Redis Cluster the schedules and their tasks share one shard (yadtq.store.cluster.shard_key).
        self.keys = KeySpace.of(settings).for_task(PERIODIC_ID_PREFIX)
        self._define = bind(client, "schedule_define")
        self._fire = bind(client, "schedule_fire")
        self._untake = bind(client, "untake")

    def now(self) -> float:
        """Redis server time."""
        sec, usec = self.r.time()
        return float(sec) + float(usec) / 1e6

    # -- definitions ------------------------------------------------------------
    def define(self, spec: ScheduleSpec, origin: str = "runtime") -> str:
        """Adds or replaces `spec` ("new" | "changed" | "same"); its last run is kept when replaced."""
        raw = self._define(keys=[self.keys.schedule(spec.name), self.keys.schedules],
                           args=[spec.name, spec.definition(), repr(spec.slot_at(self.now())), origin])
        return str(raw[0])

    def remove(self, name: str) -> bool:
        """Removes a schedule; False when there was none. Its tasks already fired are kept."""
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.keys.schedule(name))
        pipe.zrem(self.keys.schedules, name)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def get(self, name: str) -> ScheduleState | None:
        found = self.states([name])
        return found[0] if found else None

    def names(self, limit: int = 10_000) -> list[str]:
        return [str(n) for n in self.r.zrange(self.keys.schedules, 0, limit - 1)]

    def states(self, names: Sequence[str] | None = None) -> list[ScheduleState]:
        """The schedules `names` (default: all, by name) with their next and last runs."""
        names = sorted(self.names()) if names is None else list(names)
        batch = Batch(self.r)  # on a cluster, the schedules' node answers TIME too
        batch.on(self.keys.schedules).time()
        for n in names:
            batch.on(self.keys.schedule(n)).hgetall(self.keys.schedule(n))
        (sec, usec), *hashes = batch.execute()
        now = float(sec) + float(usec) / 1e6
        out = []
        for h in hashes:
            if not h or "definition" not in h:
                continue  # removed meanwhile
            try:
                out.append(ScheduleState.from_hash(h, now))
            except (ConfigError, ValueError, KeyError, TypeError) as exc:  # written by hand, or an older version
                log.warning("schedule %s cannot be read (%s); skipped", h.get("name"), exc)
        return out

    # -- firing -----------------------------------------------------------------
    def due(self, limit: int = 100) -> tuple[float, list[ScheduleState], float | None]:
        """(Redis now, the schedules due for a look, when the earliest other one is due), one round trip
        (two when some are due)."""
        batch = Batch(self.r)
        batch.on(self.keys.schedules).time()
        batch.on(self.keys.schedules).zrange(self.keys.schedules, 0, limit - 1, withscores=True)
        (sec, usec), entries = batch.execute()
        now = float(sec) + float(usec) / 1e6
        names = [str(n) for n, score in entries if float(score) <= now]
        later = next((float(score) for _, score in entries if float(score) > now), None)
        return now, (self.states(names) if names else []), later

    def fire(self, state: ScheduleState, action: str, slot: float | None, next_due: float,
             hold: float = HOLD) -> tuple[str, Fired | None]:
        """Applies a decision (`fire` | `skip` | `wait`) to one slot; (reply kind, what to publish)."""
        spec, s = state.spec, self.settings
        slot = slot if slot is not None else state.last_slot
        task_id = slot_task_id(spec.name, slot)
        args_json, kwargs_json = json.dumps(list(spec.args)), json.dumps(spec.kwargs)
        raw = self._fire(
            keys=[self.keys.schedule(spec.name), self.keys.schedules, self.keys.task(task_id),
                  self.keys.status(Status.QUEUED), self.keys.retries, self.keys.broker_epoch],
            args=[spec.name, state.version, action, repr(slot), repr(next_due), task_id, spec.task, args_json,
                  kwargs_json, s.tries, body_digest(spec.task, spec.args, spec.kwargs), hold])
        kind = str(raw[0])
        if kind != "fired":
            return kind, None
        message = TaskMessage(task_id, spec.task, spec.args, spec.kwargs, s.tries, slot)
        return kind, Fired(spec.name, slot, message, str(raw[1]))

    def confirm(self, fired: Sequence[Fired]) -> None:
        """The fired slots' tasks are on the broker: no longer parked for the fallback path."""
        if fired:
            self._untake(keys=[self.keys.retries], args=[x for f in fired for x in (f.message.task_id, f.armed)])

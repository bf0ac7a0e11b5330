"""What a policy may see and do: the `WorkerContext` every middleware hook receives.

A policy never holds the `Worker`: it sees the worker's name and settings, writes
to its event log, and acts only through two narrow doors, the `PolicyStore` (the few
Redis calls policies make, each one answering its default while Redis is away) and
the `Publisher` (records to Kafka topics). So a policy cannot reach into the loop's
state, and the loop can change without breaking one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.store.claims import ClaimPipeline, DueRetry
from yadtq.store.delayed import DelayedTasks, DueTask
from yadtq.store.live_state import LiveState
from yadtq.store.retention import Retention, Swept
from yadtq.worker.outages import RedisOutages


class Publisher(Protocol):
    """Sends records to a topic; `flush()` is True once everything sent is on the broker."""

    def publish(self, topic: str, key: bytes | None, value: bytes,
                headers: Sequence[tuple[str, bytes]] = ()) -> None: ...
    def flush(self) -> bool: ...


class PolicyStore(Protocol):
    """The Redis calls a policy may make. While Redis is away (`available` False) none is
    made: each answers its default (nothing taken, nothing written) and the caller tries later."""

    @property
    def available(self) -> bool: ...
    def add_dead_letter(self, record: dict[str, Any]) -> None: ...
    def take_due_retries(self) -> list[DueRetry]: ...
    def untake_retries(self, taken: Sequence[DueRetry]) -> None: ...
    def announce_task_ttls(self, ttls: Mapping[str, float | None]) -> None: ...
    def sweep_retention(self) -> Swept | None: ...
    def take_scheduled(self, limit: int) -> list[DueTask]: ...
    def confirm_scheduled(self, taken: Sequence[DueTask]) -> None: ...


@dataclass(frozen=True)
class WorkerContext:
    """Handed to every hook as its first argument (named `worker` in older middleware: the
    attributes it used, `name`, `settings` and `events`, keep their names)."""

    name: str
    settings: Settings
    standby: bool  # a standby worker takes partitions only when another worker leaves
    events: EventLog
    store: PolicyStore
    publisher: Publisher


class GuardedStore:
    """The `PolicyStore` of a running worker: its Redis calls go through the outage backoff."""

    def __init__(self, live: LiveState, claims: ClaimPipeline, outages: RedisOutages) -> None:
        self.live = live
        self.claims = claims
        self.outages = outages
        self.retention = Retention(live.r, live.settings)
        self.delayed = DelayedTasks(claims.r, claims.settings)

    @property
    def available(self) -> bool:
        return not self.outages.down

    def add_dead_letter(self, record: dict[str, Any]) -> None:
        self.outages.call(lambda: self.live.add_dead_letter(record), None)

    def take_due_retries(self) -> list[DueRetry]:
        nothing: list[DueRetry] = []
        return self.outages.call(self.claims.take_due, nothing)

    def untake_retries(self, taken: Sequence[DueRetry]) -> None:
        self.outages.call(lambda: self.claims.untake(taken), None)

    def announce_task_ttls(self, ttls: Mapping[str, float | None]) -> None:
        self.outages.call(lambda: self.retention.announce_task_ttls(ttls), None)

    def sweep_retention(self) -> Swept | None:
        return self.outages.call(self.retention.sweep_if_due, None)

    def take_scheduled(self, limit: int) -> list[DueTask]:
        nothing: list[DueTask] = []
        return self.outages.call(lambda: self.delayed.take(limit), nothing)

    def confirm_scheduled(self, taken: Sequence[DueTask]) -> None:
        self.outages.call(lambda: self.delayed.confirm(taken), None)

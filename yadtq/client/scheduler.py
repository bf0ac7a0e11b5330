"""The scheduler: fires the due slots of every periodic schedule in Redis, each slot once.

Any number of schedulers run at once (one in every worker, one in the monitor) and need not
agree on anything: each looks at the schedules that are due by Redis time, decides per schedule
(`ScheduleSpec.decide`: fire, skip a missed slot, or wait), and applies the decision with one
atomic call (`ScheduleStore.fire`) that only the first of them wins for a given slot. The
winner's call has recorded the slot's task and parked it; the winner publishes it and confirms.
If it dies or cannot publish, the parked task is published by the parked-retries path of any
worker a few seconds later: a slot is never lost, never doubled (one record per slot; a
duplicate message is harmless, the claim runs a task once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from yadtq.logs import EventLog
from yadtq.store.schedules import HOLD, Fired, ScheduleStore
from yadtq.task.messages import TaskMessage

log = logging.getLogger(__name__)
# Bounds of the pause between looks: new and changed schedules are seen within MAX_PAUSE.
MIN_PAUSE, MAX_PAUSE = 0.05, 1.0

# Publishes messages of tasks that are already recorded; True once the broker has them all.
Publish = Callable[[Sequence[TaskMessage]], bool]


class Scheduler:
    def __init__(self, store: ScheduleStore, publish: Publish, *, who: str, events: EventLog | None = None,
                 hold: float = HOLD) -> None:
        self.store = store
        self.publish = publish
        self.who = who  # the process running it, in events and logs
        self.events = events
        self.hold = hold

    def tick(self) -> float:
        """Fires what is due now; returns how many seconds to wait before the next look.

        Raises the store's Redis errors (the caller waits the outage out); a publish that fails
        is logged: the slots' tasks stay parked and are published by the fallback path."""
        now, due, later = self.store.due()
        fired: list[Fired] = []
        looks = [later] if later is not None else []
        for state in due:
            decision = state.spec.decide(now, state.last_slot)
            kind, f = self.store.fire(state, decision.action, decision.slot, decision.next_due, self.hold)
            looks.append(decision.next_due)
            if f is not None:
                fired.append(f)
            elif kind == "skipped" and decision.slot is not None:
                log.info("schedule %s: slot %s missed by %.0fs, skipped (catch_up=skip)", state.spec.name,
                         _iso(decision.slot), decision.late)
                self._emit("schedule_skipped", schedule=state.spec.name, slot=decision.slot,
                           late=round(decision.late, 3))
        if fired:
            self._publish(fired)
        return min(MAX_PAUSE, max(MIN_PAUSE, min(looks, default=now + MAX_PAUSE) - now))

    def _publish(self, fired: list[Fired]) -> None:
        try:
            published = self.publish([f.message for f in fired])
        except Exception as exc:  # the parked-retries path publishes them once armed
            log.warning("%d scheduled task(s) recorded, not published yet (%s); the parked-retries path "
                        "will publish them", len(fired), exc)
            published = False
        if published:
            self.store.confirm(fired)
        for f in fired:
            self._emit("schedule_fired", schedule=f.schedule, slot=f.slot, task_id=f.message.task_id,
                       task=f.message.task, published=published)

    def _emit(self, event: str, **fields: object) -> None:
        if self.events is not None:
            self.events.emit(event, scheduler=self.who, **fields)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

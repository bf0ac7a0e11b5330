"""Periodic schedules without processes: slot arithmetic, cron, the catch-up policy, the decorator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from yadtq.errors import ConfigError
from yadtq.store.schedules import slot_task_id
from yadtq.task import periodic as periodic_module
from yadtq.task import slots
from yadtq.task.periodic import ScheduleSpec, declared, periodic
from yadtq.task.registry import Registry


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_every_slots_are_multiples_of_the_period_since_the_epoch() -> None:
    t = at("2026-12-03T11:45:07")
    assert slots.slot_at(t, every=10) == at("2026-12-03T11:45:00")
    assert slots.slot_at(at("2026-12-03T11:45:10"), every=10) == at("2026-12-03T11:45:10")  # on a slot: that slot
    assert slots.next_after(at("2026-12-03T11:45:10"), every=10) == at("2026-12-03T11:45:20")  # strictly after
    assert slots.slot_at(t, every=3600) == at("2026-12-03T11:00:00")  # every=3600 is on the hour


def test_cron_slots_in_utc_including_a_moment_exactly_on_a_slot() -> None:
    cron = "*/5 * * * *"
    assert slots.slot_at(at("2026-12-03T11:47:59"), cron=cron) == at("2026-12-03T11:45:00")
    assert slots.slot_at(at("2026-12-03T11:45:00"), cron=cron) == at("2026-12-03T11:45:00")
    assert slots.slot_at(at("2026-12-03T11:44:59.999"), cron=cron) == at("2026-12-03T11:40:00")
    assert slots.next_after(at("2026-12-03T11:45:00"), cron=cron) == at("2026-12-03T11:50:00")
    assert slots.next_after(at("2026-12-03T23:59:00"), cron="0 3 * * *") == at("2026-12-04T03:00:00")


def test_a_due_slot_fires_and_nothing_fires_twice() -> None:
    last = at("2026-12-03T11:45:00")
    d = slots.decide(at("2026-12-03T11:45:10.2"), last, "once", every=10)
    assert (d.action, d.slot, d.next_due) == ("fire", at("2026-12-03T11:45:10"), at("2026-12-03T11:45:20"))
    assert round(d.late, 3) == 0.2
    d = slots.decide(at("2026-12-03T11:45:09"), last, "once", every=10)  # the last slot is the current one
    assert (d.action, d.slot, d.next_due) == ("wait", None, at("2026-12-03T11:45:10"))


def test_missed_slots_fire_once_together_or_are_skipped_as_the_schedule_says() -> None:
    cron, last = "0 3 * * *", at("2026-12-02T03:00:00")
    back = at("2026-12-03T03:40:00")  # everything was down from 02:50 to 03:40
    once = slots.decide(back, last, "once", cron=cron)
    assert (once.action, once.slot, once.next_due) == ("fire", at("2026-12-03T03:00:00"), at("2026-12-04T03:00:00"))
    skip = slots.decide(back, last, "skip", cron=cron)
    assert (skip.action, skip.slot, skip.next_due) == ("skip", at("2026-12-03T03:00:00"), at("2026-12-04T03:00:00"))
    # Down for three days: one firing covers them all (coalesced), not three.
    assert slots.decide(at("2026-12-05T12:00:00"), last, "once", cron=cron).slot == at("2026-12-05T03:00:00")
    # Noticed within the grace (half the period, at most a minute), a slot is on time for "skip" too.
    assert slots.decide(at("2026-12-03T03:00:59"), last, "skip", cron=cron).action == "fire"
    assert slots.decide(at("2026-12-03T03:01:01"), last, "skip", cron=cron).action == "skip"
    assert slots.decide(at("2026-12-03T11:45:10.9"), at("2026-12-03T11:45:00"), "skip", every=10).action == "fire"
    assert slots.decide(at("2026-12-03T11:45:15.1"), at("2026-12-03T11:45:00"), "skip", every=10).action == "skip"
    assert slots.grace_for(0, 1) == slots.MIN_GRACE and slots.grace_for(0, 86_400) == slots.MAX_GRACE


def test_a_spec_is_checked_when_made() -> None:
    assert ScheduleSpec("s", "add", every=timedelta(minutes=1)).every == 60
    assert ScheduleSpec("s", "add", cron=" */5 * * * * ").when == "cron */5 * * * *"
    for bad in (dict(), dict(every=10, cron="* * * * *"), dict(every=0), dict(every=1.5), dict(every=True),
                dict(cron="every minute"), dict(every=10, catch_up="all"), dict(every=10, args="ab"),
                dict(every=10, args=(float("nan"),))):
        with pytest.raises(ConfigError):
            ScheduleSpec("s", "add", **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name"):
        ScheduleSpec("no spaces", "add", every=10)
    spec = ScheduleSpec("s", "add", every=10, args=(1,), kwargs={"y": 2})
    assert ScheduleSpec.from_definition("s", spec.definition()) == spec


def test_the_decorator_goes_above_task_and_declares_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private book: in-process workers of later tests register what this process declared.
    monkeypatch.setattr(periodic_module, "_declared", periodic_module.Declared())
    reg = Registry()

    @periodic(every=30, args=[1, 2], name="unit-sum", tasks=reg)
    @reg.task("unit_add")
    def add(x: int, y: int) -> int:
        return x + y

    assert add(1, 2) == 3  # still the plain function
    assert ScheduleSpec("unit-sum", "unit_add", every=30, args=(1, 2)) in declared()
    with pytest.raises(ConfigError, match="above @task"):
        @reg.task("unit_other")
        @periodic(every=30, tasks=reg)
        def other() -> None: ...
    with pytest.raises(ConfigError, match="declared twice"):
        periodic(cron="* * * * *", name="unit-sum", tasks=reg)(add)


def test_a_slot_task_id_is_the_same_everywhere() -> None:
    assert slot_task_id("report", at("2026-12-03T11:45:00")) == "periodic:report:20261203T114500Z"

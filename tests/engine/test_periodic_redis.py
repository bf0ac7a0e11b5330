"""Periodic schedules against a real Redis: three schedulers race on every slot, one of them dies
between the fence and the publish, and still each slot has one task, published once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest
from conftest import wait_for

from yadtq.client.scheduler import Scheduler
from yadtq.config import Settings
from yadtq.store.claims import ClaimPipeline
from yadtq.store.connection import RedisClient, connect_redis
from yadtq.store.keys import Keys
from yadtq.store.schedules import Fired, ScheduleState, ScheduleStore, slot_task_id
from yadtq.task.messages import TaskMessage
from yadtq.task.periodic import ScheduleSpec
from yadtq.task.status import Status


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, prefix=f"p{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def client(settings: Settings) -> Iterator[RedisClient]:
    c = connect_redis(settings)
    yield c
    c.close()


class Killed(Exception):
    """Stands for kill -9 of a scheduler's process right after its fence won a slot."""


class DyingStore(ScheduleStore):
    """Dies the first time it wins a slot: the slot's task is recorded, never published by it."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        super().__init__(client, settings)
        self.won: str | None = None

    def fire(self, state: ScheduleState, action: str, slot: float | None, next_due: float,
             hold: float = 10.0) -> tuple[str, Fired | None]:
        kind, fired = super().fire(state, action, slot, next_due, hold)
        if fired is not None:
            self.won = fired.message.task_id
            raise Killed(self.won)
        return kind, fired


def test_three_schedulers_fire_each_slot_once_even_when_one_dies_after_its_fence(
        client: RedisClient, settings: Settings) -> None:
    names = [f"s{i}" for i in range(12)]
    admin = ScheduleStore(client, settings)
    for n in names:
        admin.define(ScheduleSpec(n, "add", every=1, args=(1, 2)))
    published: list[str] = []
    lock = threading.Lock()

    def publish(messages: Sequence[TaskMessage]) -> bool:
        with lock:
            published.extend(m.task_id for m in messages)
        return True

    stop = threading.Event()
    dying = DyingStore(connect_redis(settings), settings)
    stores = [ScheduleStore(connect_redis(settings), settings) for _ in range(2)] + [dying]
    deaths: list[BaseException] = []

    def run(store: ScheduleStore) -> None:
        scheduler = Scheduler(store, publish, who="test", hold=0.3)
        try:
            while not stop.is_set():
                stop.wait(scheduler.tick())
        except Killed as exc:
            deaths.append(exc)

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in stores]
    for t in threads:
        t.start()
    try:
        # Slots of every schedule fired after the death too: those races had two live runners left.
        wait_for(lambda: deaths and all(int(client.hget(Keys(settings.prefix).schedule(n), "fired") or 0) >= 3
                                        for n in names), 15, what="the dying scheduler's death and 3 slots each")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    keys = Keys(settings.prefix)
    records = [str(i) for i in client.zrange(keys.status(Status.QUEUED), 0, -1)]
    assert dying.won in records
    for n in names:
        fired = int(client.hget(keys.schedule(n), "fired") or 0)
        mine = sorted(r for r in records if r.startswith(f"periodic:{n}:"))
        assert len(mine) == fired, f"{n}: {fired} slots fired, {len(mine)} task records"
        # No slot between the first and the last was lost (each second is a slot of every=1).
        state = admin.get(n)
        assert state is not None and mine[-1] == slot_task_id(n, state.last_slot)
        assert mine == [slot_task_id(n, state.last_slot - k) for k in range(len(mine) - 1, -1, -1)]
    # Each recorded task published once by the live schedulers, except the dead one's win.
    counts = Counter(published)
    assert max(counts.values()) == 1
    assert set(published) == set(records) - {dying.won}
    # Its task waits parked (nothing else does: the others were confirmed) and the parked-retries
    # path of any worker publishes it once armed.
    assert [str(i) for i in client.zrange(keys.retries, 0, -1)] == [dying.won]
    pipeline = ClaimPipeline(client, settings, "W1", "W1:x")
    taken = wait_for(lambda: pipeline.take_due(), 5, what="the dead scheduler's slot due for publishing")
    assert [d.message.task_id for d in taken] == [dying.won]
    assert taken[0].message.task == "add" and list(taken[0].message.args) == [1, 2]
    for s in stores:
        s.r.close()


def test_defining_keeps_the_last_slot_and_a_stale_or_removed_schedule_fires_nothing(
        client: RedisClient, settings: Settings) -> None:
    store = ScheduleStore(client, settings)
    spec = ScheduleSpec("nightly", "add", cron="0 3 * * *", args=(1, 2))
    assert store.define(spec) == "new"
    state = store.get("nightly")
    assert state is not None and state.last_slot == spec.slot_at(store.now())  # the slot under way never fires
    assert state.next_run == spec.next_after(state.last_slot)
    assert store.define(spec, origin="decorator") == "same"  # a worker's restart changes nothing
    assert store.define(ScheduleSpec("nightly", "add", cron="0 4 * * *", args=(1, 2))) == "changed"
    # A scheduler that read the old version is refused; so is one after the schedule was removed.
    kind, fired = store.fire(state, "fire", state.last_slot + 86_400, state.next_run)
    assert (kind, fired) == ("changed", None)
    new = store.get("nightly")
    # Its last slot is the new definition's slot under way (or the old last, if later): nothing fires at once.
    assert new is not None and new.spec.cron == "0 4 * * *"
    assert new.last_slot == max(state.last_slot, new.spec.slot_at(store.now()))
    assert store.remove("nightly") and not store.remove("nightly")
    assert store.fire(new, "fire", new.last_slot + 1, new.next_run)[0] == "gone"
    assert store.states() == []


def test_a_slot_fires_once_and_a_skipped_slot_leaves_no_task(client: RedisClient, settings: Settings) -> None:
    store = ScheduleStore(client, settings)
    store.define(ScheduleSpec("tick", "add", every=60, args=(1, 2), catch_up="skip"))
    state = store.get("tick")
    assert state is not None
    slot = state.last_slot  # not fired when defined: fire it by hand, as if it were the next one
    client.hset(Keys(settings.prefix).schedule("tick"), "last_slot", slot - 120)
    kind, fired = store.fire(state, "skip", slot - 60, slot + 60)
    assert (kind, fired) == ("skipped", None)
    assert not client.exists(Keys(settings.prefix).task(slot_task_id("tick", slot - 60)))
    kind, fired = store.fire(state, "fire", slot, slot + 60)
    assert kind == "fired" and fired is not None and fired.message.task_id == slot_task_id("tick", slot)
    assert store.fire(state, "fire", slot, slot + 60)[0] == "taken"  # the same slot again: fenced
    assert store.fire(state, "fire", slot - 60, slot + 60)[0] == "taken"  # an older one too
    after = store.get("tick")
    assert after is not None and (after.fired, after.skipped, after.last_task) == (1, 1, fired.message.task_id)


def test_the_dashboard_lists_schedules_with_next_and_last_run_and_adds_one(
        client: RedisClient, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest

    store = ScheduleStore(client, settings)
    store.define(ScheduleSpec("tick", "add", every=60, args=(1, 2)))
    state = store.get("tick")
    assert state is not None
    client.hset(Keys(settings.prefix).schedule("tick"), "last_slot", state.last_slot - 60)
    assert store.fire(state, "fire", state.last_slot, state.next_run)[0] == "fired"
    for k, v in {**settings.env(), "YADTQ_DASHBOARD_ALLOW_DESTRUCTIVE": "true"}.items():
        monkeypatch.setenv(k, v)
    st.cache_resource.clear()  # the cached client belongs to another test's settings
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=30).run()
    at.switch_page("views/schedules.py").run()
    assert not at.exception, at.exception
    row = at.dataframe[0].value.iloc[0]
    assert (row["name"], row["when"], row["fired"]) == ("tick", "every 60s", 1)
    assert row["next run"] != "-" and row["last run"] != "-" and row["last task"].startswith("periodic:tick:")
    at.text_input[0].set_value("nightly")
    at.text_input[1].set_value("add")
    at.text_input[2].set_value("[1, 2]")
    at.radio[0].set_value("cron")
    at.text_input[3].set_value("0 3 * * *")
    at.button[0].click().run()
    assert not at.exception, at.exception
    added = store.get("nightly")
    assert added is not None and added.spec.cron == "0 3 * * *" and added.spec.args == (1, 2)

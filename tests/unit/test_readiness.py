"""What clients, the API and the dashboard say while no worker serves yet."""

from __future__ import annotations

from yadtq.store.live_state import ALIVE, DEAD, LEFT
from yadtq.store.readiness import waiting_note


def w(name: str, status: str = ALIVE, state: str = "idle", partitions: tuple[int, ...] = ()) -> dict[str, object]:
    return {"name": name, "status": status, "state": state, "partitions": list(partitions)}


def test_an_empty_registry_tells_nothing() -> None:
    assert waiting_note([]) is None  # no monitor has written it: no claim either way


def test_a_worker_owning_partitions_means_tasks_can_start() -> None:
    assert waiting_note([w("W1", partitions=(0, 1)), w("W2", state="joining")]) is None


def test_joining_workers_are_named_in_order() -> None:
    note = waiting_note([w("W2", state="joining"), w("W1", state="joining"), w("S1", state="standby")])
    assert note is not None and note.startswith("workers are joining the group (W1, W2)")


def test_no_live_worker_and_standby_only() -> None:
    assert "no worker is alive" in (waiting_note([w("W1", DEAD), w("W2", LEFT)]) or "")
    assert "only standby workers" in (waiting_note([w("S1", state="standby"), w("W1", DEAD)]) or "")


def test_a_live_worker_without_partitions_after_its_join_is_no_reason_to_wait() -> None:
    # More workers than partitions: one serves nothing, and the others do.
    assert waiting_note([w("W1", partitions=(0,)), w("W5")]) is None

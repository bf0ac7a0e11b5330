"""The chaos run's handling of quarantines (worker_farm/chaos_quarantine.py): a quarantined ledger task
is requeued once per quarantine, a half-done requeue is sent again, any other failure is left alone,
and a quarantine the ledger does not explain is named. The client here is a stand-in for the two calls
the requeuer makes; the real ones run in the chaos tests (tests/system/test_chaos.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from kafka.errors import KafkaTimeoutError

from worker_farm.chaos_quarantine import Requeuer, without_cause
from yadtq.client.client import YADTQ
from yadtq.store.backend import TaskRecord
from yadtq.task.status import Status


@dataclass
class _Store:
    records: dict[str, TaskRecord]

    def get_many(self, ids: list[str]) -> list[TaskRecord]:
        return [self.records[i] for i in ids if i in self.records]


@dataclass
class _Client:
    backend: _Store
    fail_sends: int = 0  # how many requeues reset the record and then fail to publish
    sent: list[str] = field(default_factory=list)

    def requeue(self, task_id: str) -> str:
        rec = self.backend.records[task_id]
        self.backend.records[task_id] = TaskRecord(task_id, rec.task, Status.QUEUED)
        if self.fail_sends:
            self.fail_sends -= 1
            raise KafkaTimeoutError("broker restarting")
        self.sent.append(task_id)
        return task_id


def _failed(tid: str, error: str) -> TaskRecord:
    return TaskRecord(tid, "ledger_add", Status.FAILED, error=error)


def _requeuer(client: _Client) -> Requeuer:
    return Requeuer(cast(YADTQ, cast(Any, client)), every=0.0)


def test_a_quarantined_task_is_requeued_once_and_counted_once() -> None:
    store = _Store({"q": _failed("q", "quarantined: its worker died 3 times while running it (W1, W2, W3)"),
                    "boom": _failed("boom", "ValueError: boom"), "ok": TaskRecord("ok", "ledger_add", Status.SUCCESS)})
    client = _Client(store)
    r = _requeuer(client)
    r.sweep(["q", "boom", "ok"])
    r.sweep(["q", "boom", "ok"])  # queued now: nothing more to do
    assert client.sent == ["q"] and r.times == Counter({"q": 1}) and not r.owes
    assert store.records["boom"].status == Status.FAILED  # a task's own failure is not the requeuer's to undo


def test_a_requeue_whose_publish_failed_is_sent_again_and_still_counts_one_quarantine() -> None:
    store = _Store({"q": _failed("q", "quarantined: its worker died 3 times while running it (W1, W2, W3)")})
    client = _Client(store, fail_sends=2)
    r = _requeuer(client)
    for _ in range(3):
        r.sweep(["q"])
    assert client.sent == ["q"] and r.times == Counter({"q": 1}) and not r.owes
    # quarantined again later: a second quarantine
    store.records["q"] = _failed("q", "quarantined: its worker died 3 times while running it (W4, W1, W2)")
    r.sweep(["q"])
    assert client.sent == ["q", "q"] and r.times == Counter({"q": 2})


def test_a_quarantine_needs_its_cut_off_runs_in_the_ledger() -> None:
    ledger = [("a", 1, 1), ("a", 2, 2), ("a", 3, 3), ("a", 4, 1),  # 3 runs cut off, then the run after the requeue
              ("b", 1, 1), ("b", 2, 1)]  # quarantined after a single run: no cause
    assert without_cause(Counter({"a": 1}), ledger, 3) == []
    [why] = without_cause(Counter({"a": 1, "b": 1}), ledger, 3)
    assert why.startswith("task b quarantined 1 time(s) after 2 run(s)")
    assert without_cause(Counter({"a": 2}), ledger, 3) != []  # twice needs 7 runs

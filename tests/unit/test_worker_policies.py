"""The worker's policies on their own: middleware against a `WorkerContext` of small fakes,
no worker, no Redis, no broker. Also: no middleware module imports the loop (lazily or for
types only), so a policy can never reach for the `Worker`."""

from __future__ import annotations

import ast
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import yadtq.worker
from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.store.claims import DueRetry, Run
from yadtq.store.retention import Swept
from yadtq.task.messages import TaskMessage
from yadtq.task.registry import Registry
from yadtq.worker.context import WorkerContext
from yadtq.worker.crash import CrashInjector
from yadtq.worker.jobs import ERROR, FAILED, RETRY, SUCCESS, Finished, Job
from yadtq.worker.middleware import FOREIGN, QUARANTINED, REJECTED, SKIPPED, Hooks, Middleware
from yadtq.worker.policies import DeadLetters, Events, ParkedRetries, Retries, builtin_policies
from yadtq.worker.records import Record, Rejected, TaskWork
from yadtq.worker.retention import RetentionSweep
from yadtq.worker.tracker import Entry

WORKER_PACKAGE = Path(yadtq.worker.__file__).parent


class FakeStore:
    def __init__(self, due: Sequence[DueRetry] = ()) -> None:
        self.available = True
        self.letters: list[dict[str, Any]] = []
        self.due = list(due)
        self.untaken: list[DueRetry] = []
        self.announced: list[dict[str, float | None]] = []
        self.sweeps = 0

    def add_dead_letter(self, record: dict[str, Any]) -> None:
        self.letters.append(record)

    def take_due_retries(self) -> list[DueRetry]:
        return list(self.due) if self.available else []

    def untake_retries(self, taken: Sequence[DueRetry]) -> None:
        self.untaken.extend(taken)

    def announce_task_ttls(self, ttls: Mapping[str, float | None]) -> None:
        self.announced.append(dict(ttls))

    def sweep_retention(self) -> Swept | None:
        self.sweeps += 1
        return None


class FakePublisher:
    def __init__(self, fails: bool = False, flushes: bool = True) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, Sequence[tuple[str, bytes]]]] = []
        self.fails = fails
        self.flushes = flushes

    def publish(self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        if self.fails:
            raise ConnectionError("broker away")
        self.sent.append((topic, key, value, headers))

    def flush(self) -> bool:
        return self.flushes


def context(store: FakeStore | None = None, publisher: FakePublisher | None = None, *, standby: bool = False,
            **settings: Any) -> tuple[WorkerContext, io.StringIO]:
    out = io.StringIO()
    s = Settings().replace(**settings) if settings else Settings()
    ctx = WorkerContext("W1", s, standby, EventLog(None, "worker-W1", stream=out), store or FakeStore(),
                        publisher or FakePublisher())
    return ctx, out


def events(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def task_entry(task_id: str = "t1", raw: bytes | None = None) -> Entry:
    m = TaskMessage(task_id, "add", (1, 2))
    return Entry(Record(3, 17, b"k", raw if raw is not None else m.encode()), TaskWork(m, "digest"))


def job(entry: Entry | None = None, failures: int = 0) -> Job:
    reg = Registry()
    reg.task("add")(lambda x, y: x + y)
    run = Run("fence", failures + 1, "add", [1, 2], {}, None, None, failures, 0.0)
    return Job(entry or task_entry(), "t1", reg.get("add"), run, None, 0.0)


def test_retries_judge_an_error_by_the_tries_left() -> None:
    ctx, _ = context(tries=3)
    retried = Retries().after_run(ctx, Finished(job(failures=0), ERROR, error="boom", requested_delay=1.5))
    assert (retried.status, retried.delay) == (RETRY, 1.5)
    assert Retries().after_run(ctx, Finished(job(failures=2), ERROR, error="boom")).status == FAILED
    assert Retries().after_run(ctx, Finished(job(), ERROR, retryable=False)).status == FAILED
    assert Retries().after_run(ctx, Finished(job(), SUCCESS)).status == SUCCESS


def test_a_failed_tasks_dead_letter_goes_to_the_topic_truncated_with_its_size_not_to_the_store() -> None:
    # its Redis entry is written by the step that stored the failure (tests/engine/test_dead_letters_engine.py)
    store, publisher = FakeStore(), FakePublisher()
    ctx, _ = context(store, publisher, max_message_bytes=1024)
    entry = task_entry(raw=b"x" * 5000)
    DeadLetters().after_complete(ctx, Finished(job(entry), FAILED, error="bad"), stored=True)
    DeadLetters().after_complete(ctx, Finished(job(entry), FAILED, error="fenced"), stored=False)
    DeadLetters().after_complete(ctx, Finished(job(entry), SUCCESS), stored=True)
    assert store.letters == []
    [(topic, key, value, headers)] = publisher.sent
    assert (topic, key, len(value)) == (ctx.settings.dlq_topic, b"t1", 1024)
    assert ("size", b"5000") in headers and ("error", b"bad") in headers


@pytest.mark.parametrize(("reason", "kept"), [(REJECTED, True), (QUARANTINED, True), (FOREIGN, True),
                                              (SKIPPED, False)])
def test_only_records_that_cannot_run_are_dead_lettered(reason: str, kept: bool) -> None:
    store, publisher = FakeStore(), FakePublisher()
    ctx, _ = context(store, publisher)
    entry = Entry(Record(0, 1, None, b"{not json"), Rejected("unreadable", None, None))
    DeadLetters().on_dropped(ctx, entry, reason, None)
    assert len(publisher.sent) == (1 if kept else 0)
    # with no task id, nothing in Redis changed for it: the policy keeps it there (none was quarantined)
    assert [d["error"] for d in store.letters] == ([reason] if kept and reason != QUARANTINED else [])


@pytest.mark.parametrize(("reason", "in_store"), [(REJECTED, False), (QUARANTINED, False), (FOREIGN, True)])
def test_a_record_whose_task_the_step_failed_is_kept_in_redis_by_that_step(reason: str, in_store: bool) -> None:
    store, publisher = FakeStore(), FakePublisher()
    ctx, _ = context(store, publisher)
    entry = Entry(Record(3, 5, b"t9", b'{"task-id": "t9"}'), Rejected("bad args", "t9", "add"))
    DeadLetters().on_dropped(ctx, entry, reason, "bad args")
    assert [(d["task_id"], d["partition"], d["offset"]) for d in store.letters] == ([("t9", 3, 5)] if in_store else [])
    assert [(topic, key) for topic, key, _, _ in publisher.sent] == [(ctx.settings.dlq_topic, b"t9")]


def test_a_dead_letter_the_broker_refuses_still_reaches_the_store() -> None:
    store = FakeStore()
    ctx, _ = context(store, FakePublisher(fails=True))
    DeadLetters().on_dropped(ctx, task_entry(), FOREIGN, "another task's id")
    assert len(store.letters) == 1


def due(n: int) -> list[DueRetry]:
    return [DueRetry(TaskMessage(f"r{i}", "add", (i, i)), "armed") for i in range(n)]


def test_parked_retries_are_published_then_confirmed() -> None:
    store, publisher = FakeStore(due(3)), FakePublisher()
    ctx, out = context(store, publisher)
    ParkedRetries().on_tick(ctx)
    assert [(t, k) for t, k, _, _ in publisher.sent] == [(ctx.settings.topic, f"r{i}".encode()) for i in range(3)]
    assert store.untaken == store.due
    ctx.events.flush()
    assert [(e["event"], e["count"]) for e in events(out)] == [("tasks_republished", 3)]


@pytest.mark.parametrize("why", ["standby", "redis away", "publish fails", "flush fails"])
def test_parked_retries_stay_parked_when_they_cannot_go_out(why: str) -> None:
    store = FakeStore(due(2))
    store.available = why != "redis away"
    publisher = FakePublisher(fails=why == "publish fails", flushes=why != "flush fails")
    ctx, _ = context(store, publisher, standby=why == "standby")
    ParkedRetries().on_tick(ctx)
    assert store.untaken == []


def test_a_tick_looks_for_due_retries_at_most_every_quarter_second() -> None:
    store, publisher = FakeStore(due(1)), FakePublisher()
    ctx, _ = context(store, publisher)
    policy = ParkedRetries()
    policy.on_tick(ctx)
    policy.on_tick(ctx)
    assert len(publisher.sent) == 1


def test_notices_reach_the_event_stream_with_the_worker_name() -> None:
    ctx, out = context()
    hooks = Hooks([Events()], ctx)
    hooks.notice("partitions_assigned", partitions=[0, 1])
    hooks.notice("task_received", task_id="t1", worker="W1", partition=0, offset=4)
    ctx.events.flush()
    got = events(out)
    assert [(e["event"], e["worker"]) for e in got] == [("partitions_assigned", "W1"), ("task_received", "W1")]
    assert got[0]["partitions"] == [0, 1]


def test_a_failing_hook_is_skipped_and_the_others_still_run() -> None:
    seen: list[str] = []

    class Broken(Middleware):
        def after_run(self, ctx: WorkerContext, finished: Finished) -> Finished:
            raise RuntimeError("bug in a plugin")

        def on_tick(self, ctx: WorkerContext) -> None:
            raise RuntimeError("bug in a plugin")

    class Counting(Middleware):
        def after_run(self, ctx: WorkerContext, finished: Finished) -> Finished:
            seen.append(f"after_run {ctx.name}")
            return finished.but(error="seen")

        def on_tick(self, ctx: WorkerContext) -> None:
            seen.append("tick")

    ctx, _ = context()
    hooks = Hooks([Broken(), Counting()], ctx)
    assert hooks.after_run(Finished(job(), SUCCESS)).error == "seen"
    hooks.call("on_tick")
    assert seen == ["after_run W1", "tick"]


def test_the_built_in_policies_come_first_in_their_order() -> None:
    assert [type(m).__name__ for m in builtin_policies()] == [
        "RetryRules", "Retries", "Events", "DeadLetters", "TimeLimits", "ParkedRetries", "Schedules", "DueTasks",
        # Tracing last, so it sees the outcome the others judged; only with opentelemetry installed
        "RetentionSweep", "Tracing"]


def test_the_retention_sweep_announces_the_tasks_ttls_and_offers_to_sweep_once_a_second() -> None:
    reg = Registry()
    reg.task("kept", result_ttl=30)(lambda: None)
    reg.task("plain")(lambda: None)
    store = FakeStore()
    ctx, _ = context(store)
    sweep = RetentionSweep.of(reg)
    for _ in range(50):  # many turns of the loop within a second
        sweep.on_tick(ctx)
    assert store.announced == [{"kept": 30, "plain": None}] and store.sweeps == 1
    store.available = False  # Redis away: nothing is tried
    sweep._offered = -1e9
    sweep.on_tick(ctx)
    assert store.sweeps == 1


def test_the_crash_injector_is_a_plugin_that_sees_only_the_context() -> None:
    injector = CrashInjector("before-claim", at_task=3)
    ctx, _ = context()
    injector.before_claim(ctx, task_entry())  # the 1st: no crash
    injector.after_complete(ctx, Finished(job(), SUCCESS), True)  # another point: not counted
    assert injector.seen == 1


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports anywhere: at the top, inside functions, under TYPE_CHECKING."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("module", sorted(p.name for p in WORKER_PACKAGE.glob("*.py")
                                          if p.name not in ("loop.py", "__init__.py")))
def test_no_worker_part_imports_the_loop(module: str) -> None:
    imported = imported_modules(WORKER_PACKAGE / module)
    assert not {"yadtq.worker.loop", "yadtq.worker.Worker", "yadtq.worker"} & imported, module

"""Dead letters are written by the Lua call that stores the failure (a real Redis): a failed outcome,
a quarantine at the claim, a rejected record. The proof of "the same call": the entry is there when
the call returns, stamped with the very Redis time the record's `finished` got."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from yadtq.config import Settings
from yadtq.errors import TaskNotFound
from yadtq.store.backend import Backend
from yadtq.store.claims import Claim, ClaimPipeline, Outcome, Quarantined, Run
from yadtq.store.connection import RedisClient, connect_redis
from yadtq.store.dead_letters import complete, entry_fields
from yadtq.store.keys import Keys
from yadtq.store.live_state import LiveState
from yadtq.store.rejects import RejectStore
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status
from yadtq.worker.records import Rejected, TaskWork


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, prefix=f"d{uuid.uuid4().hex[:8]}:", topic="jobs", max_lost_runs=2)


@pytest.fixture
def client(settings: Settings) -> Iterator[RedisClient]:
    c = connect_redis(settings)
    yield c
    c.close()


def _claim(pipe: ClaimPipeline, m: TaskMessage, offset: int) -> Claim:
    return Claim(TaskWork(m, m.digest), 1, offset, raw=m.encode())


def test_a_failure_stored_by_the_step_has_its_dead_letter_in_the_same_call(client: RedisClient,
                                                                            settings: Settings) -> None:
    backend, live, keys = Backend(client, settings), LiveState(client, settings), Keys(settings.prefix)
    m = TaskMessage("t-fail", "boom", ("x",), {}, 1, None, None)
    backend.record_queued([m], 1)
    pipe = ClaimPipeline(client, settings, "W1", "W1:1")
    _, [run] = pipe.step([], [_claim(pipe, m, 41)])
    assert isinstance(run, Run)
    dead = pipe.dead_letter(m.task_id, m.task, 1, 41, m.encode())
    # a fenced outcome (an old fence) stores nothing, so writes no dead letter either
    assert pipe.step([Outcome(m.task_id, "0", Status.FAILED, error="late", dead_letter=dead)], []) == ([False], [])
    assert live.dead_letters() == []
    stored, _ = pipe.step([Outcome(m.task_id, run.fence, Status.FAILED, error="ValueError: x", dead_letter=dead)], [])
    assert stored == [True]
    [letter] = live.dead_letters()
    finished = float(client.hget(keys.task(m.task_id), "finished"))
    assert letter["ts"] == pytest.approx(finished, abs=1e-3)  # one Redis TIME: one call
    assert {k: letter[k] for k in ("task_id", "task", "error", "topic", "queue", "partition", "offset", "size")} == {
        "task_id": "t-fail", "task": "boom", "error": "ValueError: x", "topic": "jobs", "queue": "default",
        "partition": 1, "offset": 41, "size": len(m.encode())}
    assert json.loads(letter["raw"])["task-id"] == "t-fail"
    # the same step sent again after a lost reply: stored already, no second dead letter
    assert pipe.step([Outcome(m.task_id, run.fence, Status.FAILED, error="ValueError: x", dead_letter=dead)], []) \
        == ([True], [])
    assert len(live.dead_letters()) == 1 and live.dead_letter_count() == 1


def test_a_task_quarantined_by_its_claim_has_its_dead_letter_in_the_same_call(client: RedisClient,
                                                                              settings: Settings) -> None:
    live, keys = LiveState(client, settings), Keys(settings.prefix)
    m = TaskMessage("t-poison", "add", (1, 2), {}, 3, None, None)
    Backend(client, settings).record_queued([m], 3)
    verdict: object = None
    pipes, runs = [], []
    for n in range(settings.max_lost_runs + 1):  # each run's worker "dies": its lease lapses
        pipes.append(ClaimPipeline(client, settings, f"W{n}", f"W{n}:1"))
        _, [verdict] = pipes[-1].step([], [_claim(pipes[-1], m, 7)])
        runs.append(verdict)
        client.hset(keys.task(m.task_id), "lease", 0)
    assert isinstance(verdict, Quarantined)
    [letter] = live.dead_letters()
    assert (letter["task_id"], letter["error"], letter["offset"]) == ("t-poison", verdict.error, 7)
    assert letter["ts"] == pytest.approx(float(client.hget(keys.task(m.task_id), "finished")), abs=1e-3)
    # The last run cut off comes back with its failure, under the fence the quarantine left in place:
    # the task ended by its quarantine, not by this run, so the outcome is fenced, never taken as stored.
    last = runs[-2]
    assert isinstance(last, Run)
    assert pipes[-2].step([Outcome(m.task_id, last.fence, Status.FAILED, error="late")], []) == ([False], [])
    assert client.hget(keys.task(m.task_id), "error") == verdict.error


def test_a_fresh_requeue_of_a_quarantined_task_gives_it_its_cut_off_runs_again(client: RedisClient,
                                                                               settings: Settings) -> None:
    keys = Keys(settings.prefix)
    backend = Backend(client, settings)
    m = TaskMessage("t-innocent", "add", (1, 2), {}, 3, None, None)
    backend.record_queued([m], 3)

    def claim(n: int) -> object:
        pipe = ClaimPipeline(client, settings, f"W{n}", f"W{n}:1")
        _, [verdict] = pipe.step([], [_claim(pipe, m, 7)])
        client.hset(keys.task(m.task_id), "lease", 0)  # its worker "dies" mid-run
        return verdict

    verdicts = [claim(n) for n in range(settings.max_lost_runs + 1)]
    assert isinstance(verdicts[-1], Quarantined)
    backend.reset_to_queued(m.task_id, fresh=True)
    assert client.hmget(keys.task(m.task_id), ["status", "lost_runs", "lost_by"]) == ["queued", "0", None]
    # Its next run cut off once more is the first of a new count, not a second quarantine.
    first, second = claim(10), claim(11)
    assert isinstance(first, Run) and isinstance(second, Run) and second.lost_runs == 1, (first, second)
    assert client.hget(keys.task(m.task_id), "lost_by") == "W10"


def test_a_rejected_record_has_its_dead_letter_in_the_same_call(client: RedisClient, settings: Settings) -> None:
    live = LiveState(client, settings)
    pipe = ClaimPipeline(client, settings, "W1", "W1:1")
    raw = b'{"task-id": "t-bad", "task": "add", "args": "not a list"}'
    dead = pipe.dead_letter("t-bad", "add", 0, 3, raw)
    assert RejectStore(client, settings).reject(Rejected("args must be a list", "t-bad", "add"), "W1", dead) \
        == "rejected"
    [letter] = live.dead_letters()
    assert (letter["task_id"], letter["error"], letter["raw"]) == ("t-bad", "args must be a list", raw.decode())
    assert live.forget_dead_letters("t-bad") == 1 and live.dead_letters() == []


@pytest.mark.parametrize("task_id, args", [
    ("t/poison", ('a "quoted" \\/ path/with\\slashes\nand\ttabs',)),  # the record as read, composed by the script
    ("t-poison-u", ("non-ASCII é",)),  # not ASCII: sent as a whole entry
    ("t-poison-long", ("x" * 5000,)),  # longer than RAW_KEPT: its kept text and size sent as a whole entry
])
def test_a_claims_dead_letter_is_the_entry_python_would_write(client: RedisClient, settings: Settings,
                                                              task_id: str, args: tuple[str]) -> None:
    live, keys = LiveState(client, settings), Keys(settings.prefix)
    m = TaskMessage(task_id, "add/x", args, {}, 3, None, None)
    Backend(client, settings).record_queued([m], 3)
    verdict = None
    for n in range(settings.max_lost_runs + 1):
        pipe = ClaimPipeline(client, settings, f"W{n}", f"W{n}:1")
        _, [verdict] = pipe.step([], [_claim(pipe, m, 7)])
        client.hset(keys.task(m.task_id), "lease", 0)
    assert isinstance(verdict, Quarantined)
    [letter] = live.dead_letters()
    fields = entry_fields(settings, task_id, "add/x", 1, 7, m.encode())
    assert letter == complete(fields, verdict.error, letter["ts"])
    assert list(letter) == ["ts", "error", *fields]  # the same order as an entry written from Python
    assert live.forget_dead_letters(task_id) == 1 and live.dead_letters() == []  # found by its id as written


def test_a_normal_claim_carries_the_record_as_read_not_an_entry(client: RedisClient, settings: Settings) -> None:
    pipe = ClaimPipeline(client, settings, "W1", "W1:1")
    m = TaskMessage("t-plain", "add", (1, 2), {}, 3, None, None)
    _, args = pipe._step_call(pipe.keys, [], [_claim(pipe, m, 7)])
    assert args[-2:] == ['"topic":"jobs","queue":"default","partition":1', m.encode()]


@pytest.mark.parametrize("task_id", ["tâche-é", "задача/1", "任务 🙂", 'q"uo\\te'])
def test_dead_letters_of_a_task_id_that_is_not_ascii_are_listed_requeued_forgotten_and_purged(
        client: RedisClient, settings: Settings, task_id: str) -> None:
    """Task ids are the user's strings: a dead letter written by the step (orjson's text) or from
    Python is found by its id, whatever its characters."""
    backend, live = Backend(client, settings), LiveState(client, settings)
    m = TaskMessage(task_id, "boom", ("x",), {}, 1, None, None)
    backend.record_queued([m], 1)
    pipe = ClaimPipeline(client, settings, "W1", "W1:1")
    _, [run] = pipe.step([], [_claim(pipe, m, 5)])
    assert isinstance(run, Run)
    dead = pipe.dead_letter(task_id, m.task, 1, 5, m.encode())
    assert pipe.step([Outcome(task_id, run.fence, Status.FAILED, error="ValueError: x", dead_letter=dead)], []) \
        == ([True], [])
    live.add_dead_letter(complete(entry_fields(settings, task_id, m.task, 1, 6, m.encode()), "quarantined"))
    assert [e["task_id"] for e in live.dead_letters()] == [task_id, task_id]
    # what `yadtq dlq requeue` and POST /tasks/{id}/requeue do, the producer aside
    assert backend.reset_to_queued(task_id).task_id == task_id
    assert live.forget_dead_letters(task_id) == 2 and live.dead_letters() == []
    _, [run] = pipe.step([], [_claim(pipe, m, 5)])
    assert pipe.step([Outcome(task_id, run.fence, Status.FAILED, error="again", dead_letter=dead)], []) == ([True], [])
    assert backend.purge("failed") == 1
    with pytest.raises(TaskNotFound):
        backend.get(task_id)
    assert live.forget_dead_letters(task_id) == 1

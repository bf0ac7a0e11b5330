"""Workflows on the real engine: an in-process worker, a real Redis, the worker's own publisher.

The completion counting is Lua run inside the step that stores each member's outcome
(yadtq/store/lua/lib/workflow.lua); these tests drive it through real workers and, for the
races and the crash windows, through the claim pipeline directly.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from yadtq import AsyncYADTQ
from yadtq.client.client import YADTQ
from yadtq.client.edge_check import EdgeCheck
from yadtq.client.workflows import Workflows
from yadtq.config import Settings
from yadtq.errors import MessageError, ResultTimeout, TaskFailed, TaskNotFound
from yadtq.store.announcements import Announcements
from yadtq.store.backend import Backend
from yadtq.store.claims import Claim, ClaimPipeline, Outcome, Run
from yadtq.store.connection import connect_redis
from yadtq.store.queue_stats import QueueStats
from yadtq.store.served import announce
from yadtq.store.worker_names import claim_worker_name
from yadtq.store.workflows import WorkflowStore, plan
from yadtq.task.canvas import Canvas, chain, chord, from_dict, group, signature
from yadtq.task.messages import TaskMessage, body_digest
from yadtq.task.outcomes import Fail
from yadtq.task.registry import Registry
from yadtq.task.signatures import specs_of
from yadtq.worker import MemorySource, Worker


def s(task: str, *args: Any, **kwargs: Any) -> Any:
    return signature(task, args, kwargs)


class Farm:
    """Workers on one in-memory topic; every run of every task is counted by its tag."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source = MemorySource(2)
        self.source.assign([0, 1])
        self.r = connect_redis(settings)
        self.backend = Backend(self.r, settings)
        self.store = WorkflowStore(self.r, settings)
        self.flow = Workflows(self.store, EdgeCheck(self.r, self.backend.keys), self.send, settings.tries,
                              Announcements(self.r, self.backend.keys))
        self.runs: Counter[str] = Counter()
        self.broken: set[str] = set()
        self.lock = threading.Lock()
        self.workers: list[tuple[Worker, threading.Thread]] = []
        self.sent: list[TaskMessage] = []  # the first steps the client published

    def send(self, messages: Any) -> None:
        self.sent += messages
        for m in messages:
            self.source.append(m.encode(), m.task_id.encode())

    def registry(self) -> Registry:
        reg = Registry()

        def ran(tag: str) -> None:
            with self.lock:
                self.runs[tag] += 1

        @reg.task("add")
        def add(x: float, y: float, tag: str = "") -> float:
            ran(tag or f"add{x},{y}")
            return x + y

        @reg.task("total")
        def total(values: list[float], tag: str = "") -> float:
            ran(tag or "total")
            return float(sum(values))

        @reg.task("pair")
        def pair(values: list[Any]) -> list[Any]:
            return ["got", values]

        @reg.task("broken")
        def broken(tag: str) -> str:
            ran(tag)
            if tag in self.broken:
                raise Fail(f"{tag} is broken")
            return tag

        @reg.task("mailer", queue="mail")  # declared on a named queue: a workflow step goes there
        def mailer(to: float) -> str:
            return f"mailed {to}"

        @reg.task("errback")
        def errback(task_id: str, error: str, tag: str) -> str:
            ran(tag)
            return f"{task_id}: {error}"

        return reg

    def worker(self, name: str = "W1") -> Worker:
        w = Worker(self.settings, self.registry(), name, source=self.source)
        w.connect()
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        self.workers.append((w, t))
        return w

    def result(self, wid: str, timeout: float = 15) -> Any:
        return self.flow.result(wid, timeout)

    def stop(self) -> None:
        for w, t in self.workers:
            w.stop()
            t.join(timeout=15)
        self.r.close()


@pytest.fixture
def farm(redis_url: str, tmp_path: Path) -> Iterator[Farm]:
    settings = Settings(redis_url=redis_url, prefix=f"wf{uuid.uuid4().hex[:8]}:", topic="tasks", partitions=2,
                        log_dir=str(tmp_path), concurrency=4, lease=2.0, retry_backoff=0.1, tries=1)
    f = Farm(settings)
    yield f
    f.stop()


def test_chain_group_chord_and_their_nesting(farm: Farm) -> None:
    farm.worker()
    shapes: list[tuple[Canvas, Any]] = [
        (chain(s("add", 1, 2), s("add", 10), s("add", 100)), 113),
        (group(s("add", 1, 1), s("add", 2, 2), s("add", 3, 3)), [2, 4, 6]),
        (chord(group([s("add", i, i) for i in range(5)]), s("total", tag="cb")), 20.0),
        # a chain of groups: the first group's list goes first into each member of the next
        (chain(group(s("add", 1, 1), s("add", 2, 2)), group(s("pair"), s("pair"))),
         [["got", [2, 4]], ["got", [2, 4]]]),
        # a chord inside a chain, after a step whose result reaches every header member
        (chain(s("add", 1, 1), chord([s("add", 10), s("add", 20)], s("total", tag="cb2")), s("add", 0.5)), 34.5),
        # immutable steps ignore the previous result; an empty group is the empty list
        (chain(s("add", 1, 1), signature("add", [5, 5], immutable=True)), 10),
        (chain(s("add", 1, 1), group()), []),
        (chord(group(chain(s("add", 1, 1), s("add", 1)), group(s("add", 2, 2))), s("pair")),
         ["got", [3, [4]]]),
    ]
    ids = [farm.flow.submit(wf) for wf, _ in shapes]
    for wid, (wf, want) in zip(ids, shapes, strict=True):
        assert farm.result(wid) == want, wf
    assert farm.runs["cb"] == 1 and farm.runs["cb2"] == 1
    state = farm.store.get(ids[2])
    assert state is not None and state.status == "success"
    assert [n.kind for n in state.nodes] == ["chord", "group", *["task"] * 5, "task"]
    assert [n.state for n in state.nodes] == ["success"] * 8
    assert state.nodes[7].task == "total" and state.nodes[7].result == 20.0


def test_a_failed_member_fails_the_chord_and_its_requeue_resumes_it(farm: Farm) -> None:
    farm.broken.add("m1")
    farm.worker()
    wid = farm.flow.submit(chord(group(s("broken", "m0"), s("broken", "m1"), s("broken", "m2")), s("pair")))
    with pytest.raises(TaskFailed, match="m1 is broken"):
        farm.result(wid)
    state = farm.store.get(wid)
    assert state is not None and state.status == "failed"
    member = next(n for n in state.nodes if n.task == "broken" and n.state == "failed")
    wait_for(lambda: farm.runs["m0"] == 1 and farm.runs["m2"] == 1, 10, what="the other members")
    callback = state.nodes[-1]
    assert callback.state == "waiting" and not farm.r.exists(farm.backend.keys.task(callback.task_id or ""))
    # Requeue the failed member (fixed now): the workflow runs again and the callback runs once.
    farm.broken.clear()
    assert member.task_id is not None
    message = farm.backend.reset_to_queued(member.task_id)
    assert farm.store.status(wid) == ("running", None, None)
    farm.send([message])
    assert farm.result(wid) == ["got", ["m0", "m1", "m2"]]
    assert farm.runs["m1"] == 2


def test_link_and_link_error_on_a_single_task(farm: Farm) -> None:
    farm.broken.add("bad")
    farm.worker()
    good = TaskMessage("good-" + uuid.uuid4().hex, "add", (1, 2), {}, 1, time.time())
    farm.flow.submit_linked(good, s("add", 10, tag="linked"), None)
    bad = TaskMessage("bad-" + uuid.uuid4().hex, "broken", ("bad",), {}, 1, time.time())
    farm.flow.submit_linked(bad, s("add", 1, tag="never"), s("errback", tag="eb"))
    wait_for(lambda: farm.runs["linked"] == 1 and farm.runs["eb"] == 1, 15, what="both callbacks")
    assert farm.backend.get(good.task_id).result == 3
    linked = [r for r in farm.backend.list("success", limit=20) if r.args[:2] == [3, 10]]
    assert len(linked) == 1 and linked[0].result == 13
    eb = [r for r in farm.backend.list("success", limit=20) if r.task == "errback"]
    assert eb[0].result == f"{bad.task_id}: Fail: bad is broken"
    assert farm.runs["never"] == 0


def test_a_cancelled_or_rejected_member_fails_the_workflow_and_the_callback_never_runs(farm: Farm) -> None:
    # Cancelled: the member is withdrawn while queued (no worker yet), then the others run.
    cancelled = farm.flow.submit(chord(group(s("add", 1, 1, tag="c0"), s("add", 2, 2, tag="c1")),
                                       s("total", tag="cb-cancelled")))
    member = f"{cancelled}.3"  # node 0 chord, 1 group, 2 and 3 its members
    assert farm.backend.cancel(member, by="test").status == "cancelled"
    # Rejected: one member names a task no worker knows, another's arguments fit no signature.
    unknown = farm.flow.submit(chord(group(s("add", 3, 3, tag="u0"), s("nosuch", 1)), s("total", tag="cb-unknown")),
                               unchecked=True)
    badargs = farm.flow.submit(chain(s("add", 1, 2, 3), s("total", tag="cb-badargs")))
    farm.worker()
    with pytest.raises(TaskFailed, match="cancelled by test"):
        farm.result(cancelled)
    with pytest.raises(TaskFailed, match="unknown task 'nosuch'"):
        farm.result(unknown)
    with pytest.raises(TaskFailed, match=r"\.1\) failed: add: argument 'tag' must be str, got int 3"):
        farm.result(badargs)
    wait_for(lambda: farm.runs["c0"] == 1 and farm.runs["u0"] == 1, 10, what="the members that could run")
    for wid, error in ((cancelled, "cancelled by test"), (unknown, "unknown task 'nosuch'"),
                       (badargs, "argument 'tag' must be str")):
        state = farm.store.get(wid)
        assert state is not None and state.status == "failed" and error in (state.error or "")
        failed = [n for n in state.nodes if n.task_id and n.state in ("cancelled", "failed")]
        assert len(failed) == 1 and error in (failed[0].error or "")
        callback = state.nodes[-1]
        assert callback.state == "waiting" and not farm.r.exists(farm.backend.keys.task(callback.task_id or ""))
    assert farm.runs["c1"] == 0 and not any(farm.runs[f"cb-{k}"] for k in ("cancelled", "unknown", "badargs"))

def _claim(pipe: ClaimPipeline, m: TaskMessage) -> Run:
    class Work:
        message = m
        digest = body_digest(m.task, m.args, m.kwargs)
    _, verdicts = pipe.step([], [Claim(Work(), 0, 0)])
    assert isinstance(verdicts[0], Run), verdicts
    return verdicts[0]


def test_the_last_two_members_racing_fire_the_callback_once(farm: Farm) -> None:
    """Two workers store the last two members' outcomes at the same moment, many times over."""
    pipes = [ClaimPipeline(farm.r, farm.settings, f"W{i}", f"inc{i}") for i in range(2)]
    wids = []
    for _ in range(40):
        wid = f"wf-race{uuid.uuid4().hex}"
        started = farm.store.start(plan(wid, chord([s("add", 1, 1), s("add", 2, 2)], s("total")), 1))
        farm.store.confirm(started)  # as if published: out of the outbox
        runs = [_claim(p, m) for p, m in zip(pipes, started.messages, strict=True)]
        barrier = threading.Barrier(2)

        def finish(p: ClaimPipeline, m: TaskMessage, run: Run, value: str, barrier: threading.Barrier) -> None:
            barrier.wait()
            p.step([Outcome(m.task_id, run.fence, "success", value)], [])
        threads = [threading.Thread(target=finish, args=(p, m, run, v, barrier)) for p, m, run, v in
                   zip(pipes, started.messages, runs, ("2", "4"), strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wids.append(wid)
    queued = farm.backend.get_many(farm.backend.list_ids("queued", limit=1000))
    callbacks = Counter(r.task_id.rsplit(".", 1)[0] for r in queued if r.task == "total")
    assert sorted(callbacks) == sorted(wids) and set(callbacks.values()) == {1}
    assert all(r.args == [[2, 4]] for r in queued if r.task == "total")
    # Each callback waits in the outbox (a crash before its publish loses nothing): a worker publishes and runs it.
    assert farm.r.zcard(farm.backend.keys.retries) == 40
    farm.worker()
    assert [farm.result(w) for w in wids] == [6.0] * 40


def test_first_steps_recorded_but_never_published_are_published_by_a_worker(farm: Farm) -> None:
    """The submitter dies between recording the workflow and publishing: after the hold, a worker does it."""
    wid = f"wf-lost{uuid.uuid4().hex}"
    started = farm.store.start(plan(wid, chain(s("add", 1, 2), s("add", 3)), 1), hold=0.3)
    assert len(started.messages) == 1
    farm.worker()
    assert farm.result(wid) == 6



def test_wait_on_a_workflow_id_waits_for_its_end_like_a_tasks(farm: Farm) -> None:
    farm.broken.add("w1")
    ok = farm.flow.submit(chain(s("add", 1, 2), s("add", 10)))
    bad = farm.flow.submit(chord([s("broken", "w0"), s("broken", "w1")], s("pair")))
    settings = farm.settings.replace(result_poll=10.0)  # only the workflows' announcements wake a wait in time
    with YADTQ(settings, create_topic=False) as q:
        with pytest.raises(ResultTimeout):
            q.wait(ok, timeout=0.2)  # no worker yet: still running
        farm.worker()
        started = time.monotonic()
        rec = q.wait(ok, timeout=15)
        assert time.monotonic() - started < 5, "woken by the workflow's end, well before the 10 s poll"
        assert (rec.task_id, rec.task, rec.status, rec.result, rec.error, rec.done) == \
            (ok, "workflow", "success", 13, None, True)
        assert rec.submitted is not None and rec.finished is not None and rec.finished >= rec.submitted
        failed = q.wait(bad, timeout=15)  # as a failed task's record: returned, not raised
        assert failed.status == "failed" and "w1 is broken" in (failed.error or "")
        assert q.wait(f"{ok}.1", timeout=5).result == 3  # a member's id: that task's own record
        with pytest.raises(TaskNotFound):
            q.wait("wf-unknown", timeout=1)

    async def scenario() -> None:
        async with AsyncYADTQ(settings, create_topic=False) as aq:
            assert (await aq.wait(ok, timeout=5)).result == 13
            got = await aq.wait(bad, timeout=5)
            assert (got.task_id, got.status) == (bad, "failed") and "w1 is broken" in (got.error or "")
            assert (await aq.wait(f"{ok}.2", timeout=5)).result == 13
            with pytest.raises(TaskNotFound):
                await aq.wait("wf-unknown", timeout=1)
    asyncio.run(scenario())


def test_a_steps_queue_is_its_signatures_else_its_tasks_declared_one(farm: Farm) -> None:
    farm.worker()  # serves the default queue
    # What `yadtq worker` announces: its name claimed, its tasks' specs (mailer's declared queue "mail").
    assert claim_worker_name(farm.r, farm.backend.keys, "W1", "W1:1", 60)
    announce(farm.r, farm.backend.keys, "W1", "W1:1", specs_of(farm.registry()))
    wait_for(lambda: farm.flow.edge.queue_of("mailer") == "mail", 10, 0.05, "the worker's announcement")
    wid = farm.flow.submit(chain(signature("add", [1, 2], queue="high"), s("add", 10).set(queue="low"),
                                 s("add", 100), s("mailer")))
    assert [(m.task_id, m.queue) for m in farm.sent] == [(f"{wid}.1", "high")]  # the first step, by the client
    assert farm.backend.get(f"{wid}.1").queue == "high"
    # The next step is recorded in its queue and published to that queue's topic, not the default one.
    wait_for(lambda: farm.source.published.get("tasks.low"), 10, 0.02, "step 2 published to tasks.low")
    ((key, value, _),) = farm.source.published["tasks.low"]
    assert key == f"{wid}.2".encode()
    rec = farm.backend.get(f"{wid}.2")
    assert (rec.queue, rec.status, rec.args) == ("low", "queued", [3, 10])
    stats = QueueStats(farm.r, farm.backend.keys)
    assert stats.depth("low") == 1 and "low" in stats.known()
    farm.source.append(value, key)  # as a worker of the low queue would take it
    wait_for(lambda: farm.source.published.get("tasks.mail"), 10, 0.02, "step 4 published to tasks.mail")
    assert farm.backend.get(f"{wid}.3").queue == "default"
    ((key, value, _),) = farm.source.published["tasks.mail"]
    assert key == f"{wid}.4".encode() and farm.backend.get(f"{wid}.4").queue == "mail"
    farm.source.append(value, key)
    assert farm.result(wid) == "mailed 113"
    # The JSON description carries the option (the HTTP API's), and a bad name is refused.
    assert from_dict(s("add", 1, 2).set(queue="low").to_dict()) == signature("add", [1, 2], queue="low")
    with pytest.raises(MessageError, match="bad queue name"):
        signature("add", [1], queue="no such queue")

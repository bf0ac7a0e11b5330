"""The store-and-claim step: which ready records are claimed, what each claim's verdict
means, and which claimed tasks run (on the loop thread).

One Lua step in Redis stores the outcomes of the tasks that just finished and claims the
records picked for the freed slots. A step lost to a Redis outage is kept (`unsent`) and
sent again whole: storing an outcome twice, or claiming a record twice, is safe.

Suspect isolation: a task whose earlier run was cut off by a worker's death runs alone in
this worker (others finish first, none start beside it), so a poison task cannot take
innocent tasks down with it.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from yadtq.config import Settings
from yadtq.store.claim_replies import RATE
from yadtq.store.claims import (
    Busy,
    Claim,
    ClaimPipeline,
    Done,
    Early,
    Foreign,
    Limited,
    Outcome,
    Parked,
    Quarantined,
    Run,
)
from yadtq.store.dead_letters import DeadLetter
from yadtq.store.limits import LimitStore
from yadtq.store.live_state import LiveState
from yadtq.store.rejects import RejectStore
from yadtq.task.registry import Registry
from yadtq.worker.claim_ahead import ClaimAhead
from yadtq.worker.executor import Executor
from yadtq.worker.jobs import FAILED, LOST, RETRY, SUCCESS, Finished, Job
from yadtq.worker.limits import RATE_REASON, LimitGates
from yadtq.worker.middleware import FOREIGN, PARKED, QUARANTINED, REJECTED, SKIPPED, Hooks
from yadtq.worker.outages import REDIS_ERRORS, RedisOutages
from yadtq.worker.records import ControlWork, Rejected, TaskWork
from yadtq.worker.source import TaskSource
from yadtq.worker.tracker import Entry, PartitionTracker

log = logging.getLogger(__name__)


class Dispatcher:
    """Owns the tasks claimed here (`running`), the step not sent yet, and the counters."""

    def __init__(self, settings: Settings, registry: Registry, name: str, *, tracker: PartitionTracker,
                 claims: ClaimPipeline, rejects: RejectStore, live: LiveState, source: TaskSource,
                 executor: Executor, hooks: Hooks, outages: RedisOutages, commit: Callable[[], None]) -> None:
        self.settings = settings
        self.registry = registry
        self.name = name
        self.tracker = tracker
        self.claims = claims
        self.rejects = rejects
        self.live = live
        self.source = source
        self.executor = executor
        self.hooks = hooks
        self.outages = outages
        self.commit = commit  # commits every partition's offsets now (after an end of run)
        self.done = 0
        self.failed = 0
        self.running: dict[str, Job] = {}
        self.unsent: tuple[list[Finished], list[tuple[Claim, Entry]]] = ([], [])
        self.held: tuple[tuple[str, str], ...] = ()  # (task id, fence) of `running`, for the lease thread
        self.starved = True  # the last turn found fewer ready records than free slots
        self._suspect: Job | None = None
        self._suspect_waiting = False  # claimed, not started: other tasks still run
        self.limits = LimitGates(tracker, LimitStore(claims.r, settings), registry, outages)
        self.ahead = ClaimAhead(settings.claim_ahead)

    def start_suspect_when_alone(self) -> None:
        job = self._suspect
        if job is not None and self._suspect_waiting and set(self.running) == {job.task_id}:
            self._suspect_waiting = False
            self.executor.submit(job)

    def take_finished(self) -> list[Finished]:
        out: list[Finished] = []
        while True:
            try:
                f = self.executor.finished.get_nowait()
            except queue.Empty:
                return out
            if f.duration > 0:  # it ran (not lost, not cancelled before it began)
                self.ahead.ran(f.duration)
            out.append(f)

    def pick_claims(self, freed: int, accepting: bool) -> list[tuple[Claim, Entry]]:
        """Ready records for the free slots (`freed`: slots of the tasks whose outcomes go in the same
        step), and as many more while the tasks run short (`ClaimAhead`); records that need no claim
        are dealt with here. `accepting` False: take nothing in."""
        self.starved = True
        if not accepting:
            return []
        if self._suspect is not None:
            return []
        slots = self.settings.concurrency - len(self.running) + freed - len(self.unsent[1])
        # An `async def` task takes no thread, so only the claims bound how many run at once: it is never
        # claimed ahead, and nothing is while one is in hand (yadtq/worker/claim_ahead.py).
        ahead = 0 if any(j.task.is_async for j in self.running.values()) else self.ahead.extra()
        out: list[tuple[Claim, Entry]] = []
        now = time.monotonic()
        self.limits.new_step()
        # A claim still unsent (kept over a Redis outage) holds its task as a run does: a second message
        # of that task claimed in the same step would come back `run` too (step.lua's "our own claim").
        held = frozenset(self.running).union(c.work.message.task_id for c, _ in self.unsent[1])
        for entry in self.tracker.ready(max(slots + ahead, 0) + 8, now, held):
            work = entry.work
            if isinstance(work, TaskWork):
                is_async = self.registry.get(work.message.task).is_async
                if len(out) >= slots + (0 if is_async else ahead) or self.limits.gated(entry, now):
                    continue
                if is_async:
                    ahead = 0
                self.hooks.call("before_claim", entry)
                self.tracker.start(entry)
                out.append((Claim(work, entry.partition, entry.offset, self.tracker.crowded(entry.partition),
                                  entry.record.value or b""), entry))
                self.starved = len(out) < slots + ahead
            elif isinstance(work, Rejected):
                self._reject(entry, work)
            elif isinstance(work, ControlWork):
                self._control(entry, work)
        return out

    def step(self, finished: list[Finished], claims: list[tuple[Claim, Entry]]) -> None:
        try:
            self._store_and_claim(finished, claims)
        finally:
            self.held = tuple((j.task_id, j.run.fence) for j in self.running.values())

    def flush(self, final: bool) -> None:
        """Stores the outcomes still in hand (at shutdown)."""
        finished = self.take_finished()
        deadline = time.monotonic() + (10 if final else 0)
        while finished or self.unsent[0]:
            self.step(finished, [])
            finished = []
            if not self.unsent[0] or time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def cancel(self, task_id: str, fence: str) -> None:
        """A cancel order (its record is `cancelled` already): interrupts that run if it is still ours
        (a later claim of the same task, after a requeue, has another fence and is left alone)."""
        job = self.running.get(task_id)
        if job is None or job.run.fence != fence:
            return
        log.info("task %s cancelled: interrupting its run", task_id)
        self.hooks.notice("task_cancel_received", task_id=task_id, task=job.task.name)
        self.executor.cancel(task_id)

    def give_back_running(self) -> None:
        """Abandoned on a second signal: lets the next owner claim the running tasks at once."""
        for job in list(self.running.values()):
            self.outages.call(partial(self.claims.release, job.task_id, job.run.fence, started=True), False)
            log.warning("gave back running task %s", job.task_id)

    def _store_and_claim(self, finished: list[Finished], claims: list[tuple[Claim, Entry]]) -> None:
        outcomes_f = self.unsent[0] + finished
        claims_all = self.unsent[1] + claims
        lost = [f for f in outcomes_f if f.status == LOST]
        to_store = [f for f in outcomes_f if f.status != LOST]
        for f in lost:  # its claim lapsed before it started: claim again shortly
            self.running.pop(f.job.task_id, None)
            if self._suspect is f.job:
                self._suspect = None
            self.tracker.hold(f.job.entry, time.monotonic() + 0.5, "claim lapsed")
        outcomes = [Outcome(f.job.task_id, f.job.run.fence, f.status, f.result_json, f.error,
                            f.delay if f.status == RETRY and f.job.order_key is None else 0.0,
                            self._dead_letter(f)) for f in to_store]
        sent_at = time.monotonic()
        try:
            stored, verdicts = self.claims.step(outcomes, [c for c, _ in claims_all])
        except REDIS_ERRORS as exc:
            self.unsent = (to_store, claims_all)
            self.outages.lost(exc)
            return
        self.outages.ok()
        self.unsent = ([], [])
        for f, ok in zip(to_store, stored, strict=True):
            self._settle(f, ok)
        for (_, entry), verdict in zip(claims_all, verdicts, strict=True):
            self._on_verdict(entry, verdict, sent_at)

    def _dead_letter(self, f: Finished) -> DeadLetter | None:
        """A failure's dead letter, written by the step that stores the failure (yadtq.store.dead_letters)."""
        if f.status != FAILED:
            return None
        e = f.job.entry
        return self.claims.dead_letter(f.job.task_id, f.job.task.name, e.partition, e.offset, e.record.value or b"")

    def _settle(self, f: Finished, stored: bool) -> None:
        self.running.pop(f.job.task_id, None)
        if self._suspect is f.job:
            self._suspect = None
        entry = f.job.entry
        if stored and f.status == RETRY and f.job.order_key is not None:
            self.tracker.hold(entry, time.monotonic() + f.delay, "retry backoff")
        else:
            self.tracker.finish(entry)
        if not stored:
            log.warning("task %s: outcome discarded, its claim was lost to another worker", f.job.task_id)
        elif f.status == SUCCESS:
            self.done += 1
        elif f.status == FAILED:
            self.failed += 1
        self.hooks.call("after_complete", f, stored)

    def _on_verdict(self, entry: Entry, verdict: Any, sent_at: float) -> None:
        work = entry.work
        assert isinstance(work, TaskWork)
        if isinstance(verdict, Run):
            task = self.registry.get(verdict.task)
            limit = verdict.time_limit or task.time_limit or self.settings.time_limit or None
            job = Job(entry, work.task_id, task, verdict, limit, sent_at)
            if self._suspect is not None:  # claimed in the same step as a suspect: give it back for now
                self.outages.call(lambda: self.claims.release(job.task_id, verdict.fence, started=False), False)
                self.tracker.hold(entry, time.monotonic() + 0.5, "waits for a suspect task")
                return
            self.running[job.task_id] = job
            self.limits.ran(verdict.task)
            if verdict.lost_runs:
                # Started next turn, never here: the claims made in this same step are given back
                # first, or a suspect that kills the process at once would take them down with it.
                self._suspect, self._suspect_waiting = job, True
                log.info("task %s was cut off %d time(s) before: it runs alone once the others finish",
                         job.task_id, verdict.lost_runs)
                return
            self.executor.submit(job)
        elif isinstance(verdict, Limited):
            self.limits.limited(entry, verdict)
        elif isinstance(verdict, Busy):
            self.tracker.hold(entry, time.monotonic() + 0.5, "held by another worker")
        elif isinstance(verdict, Early):  # a delayed task published ahead: claimed again at its eta
            self.tracker.hold(entry, time.monotonic() + verdict.eta - verdict.now,
                              RATE_REASON if verdict.reason == RATE else "not due yet")
        elif isinstance(verdict, Done):
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", entry, SKIPPED, verdict.status)
        elif isinstance(verdict, Parked):
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", entry, PARKED, None)
        elif isinstance(verdict, Quarantined):
            self.failed += 1
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", entry, QUARANTINED, verdict.error)
        elif isinstance(verdict, Foreign):
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", entry, FOREIGN, verdict.reason)

    # -- records that need no claim ------------------------------------------------------
    def _reject(self, entry: Entry, work: Rejected) -> None:
        raw = entry.record.value or b""
        dead = self.claims.dead_letter(work.task_id, work.task, entry.partition, entry.offset, raw)
        if work.task_id and not self.outages.call(lambda: self.rejects.reject(work, self.name, dead), None):
            return  # Redis is down: the record stays buffered and is tried again
        self.failed += 1
        log.warning("partition %d offset %d rejected: %s", entry.partition, entry.offset, work.error)
        self.tracker.finish(entry)
        self.hooks.call("on_dropped", entry, REJECTED, work.error)

    def _control(self, entry: Entry, work: ControlWork) -> None:
        msg = work.message
        token = self.settings.control_token
        self.hooks.notice("end_received", partition=entry.partition, offset=entry.offset)
        log.info("end received on partition %d offset %d", entry.partition, entry.offset)
        if token and getattr(msg, "token", "") != token:
            log.warning("end on partition %d offset %d ignored: wrong or missing control token",
                        entry.partition, entry.offset)
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", entry, REJECTED, "end without the run's control token")
            return
        parts = self.source.partition_count()
        marked = self.outages.call(lambda: self.live.mark_end(self.settings.topic, msg.id, entry.partition, parts),
                                   None)
        if marked is None:
            self.tracker.hold(entry, time.monotonic() + 1, "Redis unavailable")
            return
        self.tracker.finish(entry)
        self.commit()

"""The worker: a member of the consumer group that runs many tasks at once, exactly once.

The loop thread owns the partition tracker and the claim pipeline; it repeats
"poll, claim, run, complete, commit":

* polled records are triaged and buffered per partition (the tracker);
* as slots free up, ready records are claimed in Redis, in the same round trip
  that stores the outcomes of the tasks that just finished (one Lua step);
* claimed tasks run on the executor (threads, or the event loop for `async def`);
* offsets are committed up to each partition's lowest unfinished record, only
  after the outcomes below it are stored.

Threads and what they own: the loop thread owns the tracker, the pending
steps and the counters, and publishes an immutable `snapshot()` that the
heartbeat and lease threads read; executor threads run tasks and only send `Finished`
values back through a queue; the watchdog reads the executor's running slots
under its lock.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis

from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.store.backend import connect_redis
from yadtq.store.keys import Keys
from yadtq.store.live_state import LiveState
from yadtq.store.worker_commands import take_commands
from yadtq.task.registry import Registry
from yadtq.worker.claims import (
    Busy,
    Claim,
    ClaimPipeline,
    Done,
    DueRetry,
    Foreign,
    Outcome,
    Parked,
    Quarantined,
    Run,
)
from yadtq.worker.executor import Executor
from yadtq.worker.heartbeat import HeartbeatThread, LeaseRenewer
from yadtq.worker.jobs import FAILED, LOST, RETRY, SUCCESS, Finished, Job
from yadtq.worker.middleware import FOREIGN, PARKED, QUARANTINED, REJECTED, SKIPPED, Hooks, Middleware
from yadtq.worker.policies import DeadLetters, Events, Retries
from yadtq.worker.records import ControlWork, Record, Rejected, TaskWork, triage
from yadtq.worker.rejects import RejectStore
from yadtq.worker.source import ASSIGNED, Committed, KafkaSource, TaskSource
from yadtq.worker.tracker import Entry, PartitionTracker

log = logging.getLogger(__name__)
T = TypeVar("T")

# A task that ignored its time limit past the grace period ends its worker with this code.
EXIT_HARD_TIME_LIMIT = 71
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class Worker:
    """`connect()`, then `run()` until `stop()`, a completed `end`, or a signal."""

    def __init__(self, settings: Settings, registry: Registry, name: str, *, standby: bool = False,
                 middleware: Sequence[Middleware] = (), events: EventLog | None = None,
                 source: TaskSource | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.name = name
        self.standby = standby
        self.incarnation = f"{name}:{uuid.uuid4().hex[:12]}"
        self.events = events or EventLog(settings, f"worker-{name}")
        self.hooks = Hooks([Retries(settings), Events(self.events), DeadLetters(), *middleware])
        self.tracker = PartitionTracker(settings.max_buffered)
        self.started_at = time.time()
        self.done = 0
        self.failed = 0
        self.paused = False
        self._source = source
        self._stop = threading.Event()
        self._abandon = False
        self._running: dict[str, Job] = {}
        self._unsent: tuple[list[Finished], list[tuple[Claim, Entry]]] = ([], [])
        self._redis_down_until = 0.0
        self._redis_delay = 0.2
        self._last = {"commit": 0.0, "control": 0.0, "retries": 0.0, "end": 0.0, "snapshot": 0.0, "poll": 0.0,
                      "epoch": 0.0}
        self._epoch: str | None = None  # the broker epoch in Redis (None: none noted there)
        self._epoch_read = False  # whether `_epoch` was read at all (Redis may be away at the start)
        self._snapshot: dict[str, Any] = {}
        self._held: tuple[tuple[str, str], ...] = ()
        self._hard_limit_hit = threading.Event()
        self._starved = True  # the last turn found fewer ready records than free slots
        # A task whose earlier run was cut off by a worker's death runs alone in this worker (others
        # finish first, none start beside it), so a poison task cannot take innocent tasks down with it.
        self._suspect: Job | None = None
        self._suspect_waiting = False  # claimed, not started: other tasks still run

    # -- lifecycle ------------------------------------------------------------------
    def connect(self) -> None:
        """Connects to Redis and Kafka; raises `BackendUnavailable`/`BrokerUnavailable`."""
        s = self.settings
        self.redis = connect_redis(s, socket_timeout=max(2.0, s.connect_timeout), retries=0)
        self.keys = Keys(s.prefix)
        self.live = LiveState(self.redis, s)
        self.claims = ClaimPipeline(self.redis, s, self.name, self.incarnation)
        self.rejects = RejectStore(self.redis, s)
        self.source: TaskSource = self._source or KafkaSource(s, self.name, self.standby)
        self.executor = Executor(
            s.concurrency, worker_name=self.name, max_result_bytes=s.max_result_bytes, grace=s.time_limit_grace,
            warn_after=s.warn_running_after, before_run=lambda job: self.hooks.call("before_run", self, job),
            after_run=lambda f: self.hooks.after_run(self, f), on_hard_limit=self._hard_limit,
            on_long_running=self._long_running, confirm=self._confirm, confirm_after=s.lease / 3)
        # Known before the first assignment: commits are noted with it, and judged by it.
        self._check_broker_epoch()
        self.events.emit("connected", worker=self.name, kafka=s.kafka_bootstrap, topic=s.topic)
        self._publish_snapshot()
        producer = getattr(self.source, "producer", None)
        self.heartbeat = HeartbeatThread(producer=producer, topic=s.heartbeat_topic, interval=s.heartbeat_interval,
                                         snapshot=self.snapshot)
        self.renewer = LeaseRenewer(lease=s.lease, claims=self.held_claims, renew=self._renew)

    def snapshot(self) -> dict[str, Any]:
        """The loop's latest published state (safe from any thread: replaced, never mutated)."""
        return self._snapshot

    def held_claims(self) -> tuple[tuple[str, str], ...]:
        """(task id, fence) of every task claimed here and not settled yet (safe from any thread:
        replaced, never mutated). Published after each step, not with the periodic snapshot: a loop
        that blocks right after claiming (a broker call) must not leave its new claims unrenewed."""
        return self._held

    def stop(self) -> None:
        """Asks the loop to stop taking tasks and leave once the running ones finish (signal safe)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """First SIGINT/SIGTERM: finish the running tasks, then leave. Second: give them back and leave now."""
        def handle(signum: int, frame: object) -> None:
            if self._stop.is_set():
                self._abandon = True
                return
            log.info("signal %d: stopping after the running tasks", signum)
            self.stop()
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)

    def run(self) -> None:
        self.events.emit("worker_joined", worker=self.name, standby=self.standby, concurrency=self.settings.concurrency)
        self.executor.start()
        self.heartbeat.start()
        self.renewer.start()
        try:
            while not (self._stop.is_set() and (not self._running or self._abandon)):
                self._iterate()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._running:  # abandoned on a second signal: let the next owner claim them at once
            for job in list(self._running.values()):
                self._give_back(job)
        self.executor.stop()
        self._flush_steps(final=True)
        self._commit(force=True)
        self.heartbeat.stop()
        self.renewer.stop()
        self._publish_snapshot(state="stopping")
        self.heartbeat.beat()
        # The goodbye heartbeat may be lost with the broker (everything stopping at once): say it in Redis too.
        self._redis_call(lambda: self.live.mark_left(self.name, self.incarnation), False)
        self.heartbeat.join(timeout=2)
        self.source.close()
        self.events.emit("worker_left", worker=self.name, done=self.done, failed=self.failed)
        self.events.close()
        self.redis.close()

    def _give_back(self, job: Job) -> None:
        self._redis_call(lambda: self.claims.release(job.task_id, job.run.fence, started=True), False)
        log.warning("gave back running task %s", job.task_id)

    # -- one turn of the loop -----------------------------------------------------------
    def _iterate(self) -> None:
        self._apply_rebalances()
        self._start_suspect_when_alone()
        finished = self._take_finished()
        claims = self._pick_claims(freed=len(finished))
        if time.monotonic() < self._redis_down_until:  # wait out the outage's backoff; keep what finished
            self._unsent[0].extend(finished)
        elif finished or claims or self._unsent[0] or self._unsent[1]:
            self._step(finished, claims)
        self._housekeeping()
        self._wait()

    def _start_suspect_when_alone(self) -> None:
        job = self._suspect
        if job is not None and self._suspect_waiting and set(self._running) == {job.task_id}:
            self._suspect_waiting = False
            self.executor.submit(job)

    def _apply_rebalances(self) -> None:
        for event in self.source.rebalances():
            for p in event.partitions:
                if event.kind == ASSIGNED:
                    self.tracker.assign(p, event.starts.get(p))
                else:
                    self.tracker.revoke(p)
            if event.kind == ASSIGNED and event.partitions:
                self._place(event.partitions, event.starts)
            self.events.emit(f"partitions_{event.kind}", worker=self.name, partitions=list(event.partitions))
            self.events.flush()
            if event.partitions or event.kind == ASSIGNED:  # the farm and tests read this line
                log.info("%s %s partitions %s", self.name, event.kind, list(event.partitions))

    def _take_finished(self) -> list[Finished]:
        out = []
        while True:
            try:
                out.append(self.executor.finished.get_nowait())
            except queue.Empty:
                return out

    def _pick_claims(self, freed: int) -> list[tuple[Claim, Entry]]:
        """Ready records for the free slots (`freed`: slots of the tasks whose outcomes go in the same
        step); records that need no claim are dealt with here."""
        self._starved = True
        if self._stop.is_set() or self.paused or time.monotonic() < self._redis_down_until:
            return []
        if self._suspect is not None:
            return []
        free = self.settings.concurrency - len(self._running) + freed - len(self._unsent[1])
        out: list[tuple[Claim, Entry]] = []
        for entry in self.tracker.ready(max(free, 0) + 8, time.monotonic(), frozenset(self._running)):
            work = entry.work
            if isinstance(work, TaskWork):
                if len(out) >= free:
                    continue
                self.hooks.call("before_claim", self, entry)
                self.tracker.start(entry)
                out.append((Claim(work, entry.partition, entry.offset), entry))
                self._starved = len(out) < free
            elif isinstance(work, Rejected):
                self._reject(entry, work)
            elif isinstance(work, ControlWork):
                self._control(entry, work)
        return out

    def _step(self, finished: list[Finished], claims: list[tuple[Claim, Entry]]) -> None:
        try:
            self._store_and_claim(finished, claims)
        finally:
            self._held = tuple((j.task_id, j.run.fence) for j in self._running.values())

    def _store_and_claim(self, finished: list[Finished], claims: list[tuple[Claim, Entry]]) -> None:
        outcomes_f = self._unsent[0] + finished
        claims_all = self._unsent[1] + claims
        lost = [f for f in outcomes_f if f.status == LOST]
        to_store = [f for f in outcomes_f if f.status != LOST]
        for f in lost:  # its claim lapsed before it started: claim again shortly
            self._running.pop(f.job.task_id, None)
            if self._suspect is f.job:
                self._suspect = None
            self.tracker.hold(f.job.entry, time.monotonic() + 0.5, "claim lapsed")
        outcomes = [Outcome(f.job.task_id, f.job.run.fence, f.status, f.result_json, f.error,
                            f.delay if f.status == RETRY and f.job.order_key is None else 0.0) for f in to_store]
        sent_at = time.monotonic()
        try:
            stored, verdicts = self.claims.step(outcomes, [c for c, _ in claims_all])
        except REDIS_ERRORS as exc:
            self._unsent = (to_store, claims_all)
            self._redis_lost(exc)
            return
        self._redis_ok()
        self._unsent = ([], [])
        for f, ok in zip(to_store, stored, strict=True):
            self._settle(f, ok)
        for (_, entry), verdict in zip(claims_all, verdicts, strict=True):
            self._on_verdict(entry, verdict, sent_at)

    def _settle(self, f: Finished, stored: bool) -> None:
        self._running.pop(f.job.task_id, None)
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
        self.hooks.call("after_complete", self, f, stored)

    def _on_verdict(self, entry: Entry, verdict: Any, sent_at: float) -> None:
        work = entry.work
        assert isinstance(work, TaskWork)
        if isinstance(verdict, Run):
            task = self.registry.get(verdict.task)
            limit = verdict.time_limit or task.time_limit or self.settings.time_limit or None
            job = Job(entry, work.task_id, task, verdict, limit, sent_at)
            if self._suspect is not None:  # claimed in the same step as a suspect: give it back for now
                self._redis_call(lambda: self.claims.release(job.task_id, verdict.fence, started=False), False)
                self.tracker.hold(entry, time.monotonic() + 0.5, "waits for a suspect task")
                return
            self._running[job.task_id] = job
            if verdict.lost_runs:
                # Started next turn, never here: the claims made in this same step are given back
                # first, or a suspect that kills the process at once would take them down with it.
                self._suspect, self._suspect_waiting = job, True
                log.info("task %s was cut off %d time(s) before: it runs alone once the others finish",
                         job.task_id, verdict.lost_runs)
                return
            self.executor.submit(job)
        elif isinstance(verdict, Busy):
            self.tracker.hold(entry, time.monotonic() + 0.5, "held by another worker")
        elif isinstance(verdict, Done):
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", self, entry, SKIPPED, verdict.status)
        elif isinstance(verdict, Parked):
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", self, entry, PARKED, None)
        elif isinstance(verdict, Quarantined):
            self.failed += 1
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", self, entry, QUARANTINED, verdict.error)
        elif isinstance(verdict, Foreign):
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", self, entry, FOREIGN, verdict.reason)

    # -- records that need no claim ------------------------------------------------------
    def _reject(self, entry: Entry, work: Rejected) -> None:
        if work.task_id and not self._redis_call(lambda: self.rejects.reject(work, self.name), None):
            return  # Redis is down: the record stays buffered and is tried again
        self.failed += 1
        log.warning("partition %d offset %d rejected: %s", entry.partition, entry.offset, work.error)
        self.tracker.finish(entry)
        self.hooks.call("on_dropped", self, entry, REJECTED, work.error)

    def _control(self, entry: Entry, work: ControlWork) -> None:
        msg = work.message
        token = self.settings.control_token
        self.events.emit("end_received", worker=self.name, partition=entry.partition, offset=entry.offset)
        log.info("end received on partition %d offset %d", entry.partition, entry.offset)
        if token and getattr(msg, "token", "") != token:
            log.warning("end on partition %d offset %d ignored: wrong or missing control token",
                        entry.partition, entry.offset)
            self.tracker.finish(entry)
            self.hooks.call("on_dropped", self, entry, REJECTED, "end without the run's control token")
            return
        parts = self.source.partition_count()
        marked = self._redis_call(lambda: self.live.mark_end(self.settings.topic, msg.id, entry.partition, parts), None)
        if marked is None:
            self.tracker.hold(entry, time.monotonic() + 1, "Redis unavailable")
            return
        self.tracker.finish(entry)
        self._commit(force=True)

    def dead_letter(self, entry: Entry, error: str) -> None:
        """Keeps the raw record: in Redis (for `yadtq dlq`) and on the dead-letter topic, truncated
        to the message limit with its original size in a header."""
        work = entry.work
        task_id = work.task_id if isinstance(work, (TaskWork, Rejected)) else None
        name = work.message.task if isinstance(work, TaskWork) else work.task if isinstance(work, Rejected) else None
        raw = entry.record.value or b""
        limit = self.settings.max_message_bytes
        record = {"task_id": task_id, "task": name, "error": error, "ts": time.time(), "topic": self.settings.topic,
                  "partition": entry.partition, "offset": entry.offset, "size": len(raw),
                  "raw": raw[:4096].decode("utf-8", errors="replace")}
        self._redis_call(lambda: self.live.add_dead_letter(record), None)
        headers = [("error", error[:1000].encode()), ("size", str(len(raw)).encode())]
        try:
            self.source.publish(self.settings.dlq_topic, task_id.encode() if task_id else None, raw[:limit], headers)
        except Exception as exc:
            log.warning("dead letter for partition %d offset %d not published: %s", entry.partition, entry.offset, exc)

    # -- housekeeping ------------------------------------------------------------------
    def _due(self, what: str, every: float) -> bool:
        now = time.monotonic()
        if now - self._last[what] < every:
            return False
        self._last[what] = now
        return True

    def _housekeeping(self) -> None:
        if self._due("commit", 0.05):
            self._commit(force=False)
        if self._due("snapshot", 0.1):
            self._publish_snapshot()
        redis_up = time.monotonic() >= self._redis_down_until
        if redis_up and self._due("control", 0.5):
            self._obey_commands()
        if redis_up and not self.standby and self._due("retries", 0.25):
            self._publish_due_retries()
        if redis_up and self._due("epoch", 2.0):
            self._check_broker_epoch()
        if redis_up and self._due("end", 0.5):
            completed = self._redis_call(lambda: self.live.end_completed_at(self.settings.topic), None)
            if completed and completed > self.started_at and not self._stop.is_set():
                log.info("end of run: every partition drained; stopping")
                self.stop()
        pause, resume = self.tracker.flow()
        if pause:
            self.events.emit("partitions_paused", worker=self.name, partitions=pause, reason="buffer full")
        if resume:
            self._resume(resume)
            self.events.emit("partitions_resumed", worker=self.name, partitions=resume)

    def _place(self, partitions: Sequence[int], starts: dict[int, int]) -> None:
        """Sets where each newly assigned partition is read from, explicitly.

        kafka-python keeps the fetch position of a partition that comes back to this member,
        whatever happened meanwhile: after a memory-only broker lost its log that position lies
        past the new log's end, and the embedded broker answers such fetches with nothing, so the
        partition would never be served. Partitions sought back to this worker's own lowest
        unfinished record (`starts`) stay there; the others start at their commit when it was made
        in the log the broker holds now (its noted epoch is the one known here), else at the log's
        start (nothing committed, or a commit of a lost log: starting there would skip the tasks
        published again below it). The claim skips whatever already finished."""
        todo = [p for p in partitions if p not in starts]
        if not todo:
            return
        if not self._epoch_read:
            self._check_broker_epoch()
        try:
            committed = self.source.committed(todo)
            fresh = [p for p in todo if not self._trusted(committed.get(p))]
            places = {p: c.offset for p, c in committed.items() if c is not None and p not in fresh}
            places.update(self.source.beginnings(fresh))
        except Exception as exc:  # the broker went away again: from the start costs only time
            log.warning("could not read where partitions %s start (%s): reading them from the start", list(todo), exc)
            self.source.seek(dict.fromkeys(todo, 0))  # below a log's start, the consumer resets to it
            return
        stale = [p for p in fresh if committed.get(p) is not None]
        if stale:
            log.warning("partitions %s were committed in a log the broker lost: reading them from the start", stale)
            self.events.emit("partitions_reread", worker=self.name, partitions=stale, reason="commit of a lost log")
        for p, offset in places.items():
            self.tracker.assign(p, start=offset)
        self.source.seek(places)

    def _trusted(self, commit: Committed | None) -> bool:
        """A commit is trusted when it was made in the log the broker holds now, by its noted epoch
        (with the epoch unreadable, none is: reading from the start costs only time)."""
        if commit is None or not self._epoch_read:
            return False
        return self._epoch is None or commit.epoch == self._epoch

    def _check_broker_epoch(self) -> None:
        """The monitor notes a new broker epoch when a memory-only broker restarted and lost its
        log: positions in the old log mean nothing, so read every owned partition from the start."""
        unread = object()
        read = self._redis_call(self._read_epoch, unread)
        if read is unread:
            return
        epoch = read if isinstance(read, str) else None
        # A first read after the start could not read it: positions held since may be of any log.
        if self._epoch_read:
            changed = self._epoch is not None and epoch != self._epoch
        else:
            changed = bool(self.tracker.partitions)
        self._epoch, self._epoch_read = epoch, True
        if changed and epoch is not None:
            parts = self.tracker.partitions
            log.warning("the broker lost its log (epoch now %s): reading partitions %s from the start", epoch, parts)
            self.events.emit("broker_log_restarted", worker=self.name, partitions=parts, epoch=epoch)
            for p in parts:
                self.tracker.assign(p, start=0)  # a new log starts at offset 0
            self.source.restart_log(parts)

    def _read_epoch(self) -> str | None:
        epoch = self.redis.get(self.keys.broker_epoch)
        return None if epoch is None else str(epoch)

    def _resume(self, partitions: Sequence[int]) -> None:
        self.source.seek(self.tracker.next_offsets(partitions))

    def _close_intake(self) -> None:
        self.tracker.closed = True

    def _open_intake(self) -> None:
        self.tracker.closed = False
        self._resume(self.tracker.partitions)

    def _commit(self, force: bool) -> None:
        offsets = {p: o for p in self.tracker.partitions if (o := self.tracker.commit_point(p)) is not None}
        self.source.remember_lows(self.tracker.low_offsets())
        if not offsets:
            return
        if not self.source.flush():  # dead letters and republished retries go out first
            return
        if self.source.commit(offsets, self._epoch or ""):
            for p, o in offsets.items():
                self.tracker.committed(p, o)
            self.hooks.call("after_commit", self, offsets)

    def _flush_steps(self, final: bool) -> None:
        """Stores the outcomes still in hand (at shutdown)."""
        finished = self._take_finished()
        deadline = time.monotonic() + (10 if final else 0)
        while finished or self._unsent[0]:
            self._step(finished, [])
            finished = []
            if not self._unsent[0] or time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def _obey_commands(self) -> None:
        none: list[str] = []
        for command in self._redis_call(lambda: take_commands(self.redis, self.keys, self.name), none):
            log.info("command %s received", command)
            self.events.emit("worker_command", worker=self.name, command=command)
            if command == "pause" and not self.paused:
                self.paused = True
                self._close_intake()
            elif command == "resume" and self.paused:
                self.paused = False
                self._open_intake()
            elif command == "stop":
                self.stop()

    def _publish_due_retries(self) -> None:
        nothing: list[DueRetry] = []
        taken = self._redis_call(self.claims.take_due, nothing)
        if not taken:
            return
        try:
            for due in taken:
                m = due.message
                self.source.publish(self.settings.topic, (m.key or m.task_id).encode(), m.encode())
        except Exception as exc:  # they stay parked, re-armed: published again later
            log.warning("parked retries not published yet: %s", exc)
            return
        if self.source.flush():
            self._redis_call(lambda: self.claims.untake(taken), None)
            self.events.emit("tasks_republished", worker=self.name, count=len(taken), reason="retry due")

    def _publish_snapshot(self, state: str | None = None) -> None:
        running = tuple(self._running.values())
        busy = len(running)
        self._snapshot = {
            "name": self.name, "incarnation": self.incarnation,
            "state": state or ("stopping" if self._stop.is_set() else "paused" if self.paused else
                               "busy" if busy else "standby" if self.standby and not self.tracker.partitions
                               else "idle"),
            "current_task": running[0].task_id if running else None,
            "running": tuple(j.task_id for j in running),
            "concurrency": self.settings.concurrency,
            "done": self.done, "failed": self.failed, "partitions": tuple(self.tracker.partitions),
            "partition_state": tuple(self.tracker.describe()),
        }

    # -- waiting ------------------------------------------------------------------
    def _wait(self) -> None:
        """Polls Kafka when due; waits only when there is nothing to start: for a task to finish
        (if any runs) or for records to come."""
        since = time.monotonic() - self._last["poll"]
        buffered = self.tracker.buffered()
        poll_due = since > 0.1 or (since > 0.02 and buffered < self.settings.max_poll_records // 4)
        if not self._starved:  # slots were filled and more may be ready: go round at once
            if poll_due:
                self._poll(0)
            return
        if self._running:
            self._wait_finished(0.0 if poll_due else 0.02)
            if poll_due:
                self._poll(0)
            return
        wake = self.tracker.next_wakeup()
        self._poll(min(0.1, max(0.0, wake - time.monotonic())) if wake else 0.1)

    def _wait_finished(self, timeout: float) -> None:
        try:
            f = self.executor.finished.get(timeout=timeout)
        except queue.Empty:
            return
        self.executor.finished.put(f)  # handled by the next turn, with the others

    def _poll(self, timeout: float) -> None:
        if time.monotonic() < self._redis_down_until:
            timeout = min(max(timeout, 0.2), self._redis_down_until - time.monotonic())
        was_connected = self.source.connected
        records = self.source.poll(max(timeout, 0.0))
        if was_connected != self.source.connected:
            event = "connection_restored" if self.source.connected else "connection_lost"
            self.events.emit(event, worker=self.name, service="kafka")
        self._last["poll"] = time.monotonic()
        self.events.flush()
        self._apply_rebalances()
        for rec in records:
            self._buffer(rec)

    def _buffer(self, rec: Record) -> None:
        if not self.tracker.accepts(rec):
            self.tracker.dropped(rec)
            return
        work = triage(rec, self.registry, self.settings.max_message_bytes)
        entry = self.tracker.add(rec, work)
        if entry is not None and isinstance(work, TaskWork):
            self.events.emit("task_received", task_id=work.task_id, task=work.message.task, worker=self.name,
                             partition=rec.partition, offset=rec.offset)

    # -- Redis faults ------------------------------------------------------------------
    def _redis_call(self, call: Callable[[], T], default: T) -> T:
        """A Redis call on the loop thread; during an outage returns `default` (callers retry later).

        While an outage's backoff runs no call is made at all: each failing call can block for the
        socket timeout, and a few of them in one turn would outlast the consumer's poll limit."""
        if time.monotonic() < self._redis_down_until:
            return default
        try:
            result = call()
        except REDIS_ERRORS as exc:
            self._redis_lost(exc)
            return default
        self._redis_ok()
        return result

    def _redis_lost(self, exc: Exception) -> None:
        if self._redis_down_until == 0.0:
            log.warning("Redis unavailable (%s); pausing intake, retrying", exc)
            self.events.emit("connection_lost", worker=self.name, service="redis", error=str(exc))
            self._close_intake()  # keep polling (group membership), take nothing in
        self._redis_down_until = time.monotonic() + self._redis_delay
        self._redis_delay = min(self._redis_delay * 2, 5.0)

    def _redis_ok(self) -> None:
        if self._redis_down_until:
            log.info("Redis available again")
            self.events.emit("connection_restored", worker=self.name, service="redis")
            if not self.paused:
                self._open_intake()
        self._redis_down_until = 0.0
        self._redis_delay = 0.2

    # -- called from other threads -------------------------------------------------------
    def _renew(self, claims: list[tuple[str, str]]) -> None:
        """Lease thread: extends the leases of the running tasks."""
        for (task_id, fence), ok in zip(claims, self.claims.renew(claims), strict=True):
            if not ok and (task_id, fence) in self._held:  # still running: really lost
                log.warning("task %s: claim lost while running (its outcome will be discarded)", task_id)

    def _confirm(self, job: Job) -> bool:
        """Executor thread: is a claim made a while ago still ours? (Redis errors: treat as no.)"""
        try:
            return self.claims.confirm(job.task_id, job.run.fence)
        except REDIS_ERRORS:
            return False

    def _hard_limit(self, job: Job) -> None:
        """Watchdog thread: a task ignored its time limit past the grace period: end the process."""
        if self._hard_limit_hit.is_set():
            return
        self._hard_limit_hit.set()
        msg = (f"task {job.task_id} ({job.task.name}) ignored its time limit of {job.time_limit:g}s for "
               f"{self.settings.time_limit_grace:g}s more; ending worker {self.name}")
        log.error(msg)
        self.events.emit("worker_hard_limit", worker=self.name, task_id=job.task_id, task=job.task.name,
                         time_limit=job.time_limit)
        self.events.flush()
        print(msg, file=sys.stderr, flush=True)
        os._exit(EXIT_HARD_TIME_LIMIT)

    def _long_running(self, job: Job, elapsed: float) -> None:
        log.warning("task %s (%s) has run %.0fs with no time limit", job.task_id, job.task.name, elapsed)
        self.events.emit("task_running_long", worker=self.name, task_id=job.task_id, task=job.task.name,
                         seconds=round(elapsed, 1))

"""The worker: a member of the consumer group that runs many tasks at once, exactly once.

The loop thread repeats "poll, claim, run, complete, commit":

* polled records are triaged and buffered per partition (the tracker);
* as slots free up, ready records are claimed in Redis, in the same round trip
  that stores the outcomes of the tasks that just finished (one Lua step: `dispatch`);
* claimed tasks run on the executor (threads, or the event loop for `async def`);
* offsets are committed up to each partition's lowest unfinished record, only
  after the outcomes below it are stored.

The `Worker` only orchestrates; each concern has its own module: `intake` (polling,
rebalances, buffering, pause), `placement` (where assigned partitions start, broker-epoch
trust), `dispatch` (the store-and-claim step, verdicts, suspect isolation), `housekeeping`
(timed chores, commands), `outages` (Redis outage backoff). The policies (retries, events,
dead letters, time limits, parked retries, crash injection) are middleware that see a
`WorkerContext`, never this class (docs/extending.md).

Threads and what they own: the loop thread owns the tracker, the dispatcher and the
counters, and publishes an immutable `snapshot()` that the heartbeat and lease threads
read; executor threads run tasks and only send `Finished` values back through a queue;
the watchdog reads the executor's running slots under its lock.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from yadtq.config import Settings
from yadtq.logs import EventLog
from yadtq.store.claims import ClaimPipeline
from yadtq.store.connection import connect_redis
from yadtq.store.keyspace import base_keys
from yadtq.store.live_state import LiveState
from yadtq.store.rejects import RejectStore
from yadtq.task.registry import Registry
from yadtq.worker.context import GuardedStore, WorkerContext
from yadtq.worker.dispatch import Dispatcher
from yadtq.worker.executor import Executor
from yadtq.worker.heartbeat import HeartbeatThread, LeaseRenewer
from yadtq.worker.housekeeping import Housekeeping
from yadtq.worker.intake import Intake
from yadtq.worker.jobs import Job
from yadtq.worker.middleware import Hooks, Middleware
from yadtq.worker.outages import REDIS_ERRORS, RedisOutages, max_delay_for, warn_if_lease_shorter_than_a_failover
from yadtq.worker.placement import Placement, broker_epoch_probe
from yadtq.worker.policies import builtin_policies
from yadtq.worker.priorities import partition_order
from yadtq.worker.progress import ProgressWriter
from yadtq.worker.source import KafkaSource, TaskSource
from yadtq.worker.tracker import PartitionTracker

log = logging.getLogger(__name__)


class Worker:
    """`connect()`, then `run()` until `stop()`, a completed `end`, or a signal.

    `middleware` runs after the built-in policies (`builtin_policies()`), in the order given."""

    def __init__(self, settings: Settings, registry: Registry, name: str, *, standby: bool = False,
                 middleware: Sequence[Middleware] = (), events: EventLog | None = None,
                 source: TaskSource | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.name = name
        self.standby = standby
        self.incarnation = f"{name}:{uuid.uuid4().hex[:12]}"
        self.events = events or EventLog(settings, f"worker-{name}")
        self.middleware: list[Middleware] = [*builtin_policies(registry), *middleware]
        self.tracker = PartitionTracker(settings.max_buffered, partition_order(settings))
        self.started_at = time.time()
        self._source = source
        self._stop = threading.Event()
        self._abandon = False
        self._snapshot: dict[str, Any] = {}
        self._partition_state: tuple[dict[str, object], ...] = ()
        self._described_at = -1.0

    # -- lifecycle ------------------------------------------------------------------
    def connect(self) -> None:
        """Connects to Redis and Kafka; raises `BackendUnavailable`/`BrokerUnavailable`."""
        s = self.settings
        self.redis = connect_redis(s, socket_timeout=max(2.0, s.connect_timeout), retries=0)
        self.keys = base_keys(s)
        self.live = LiveState(self.redis, s)
        self.claims = ClaimPipeline(self.redis, s, self.name, self.incarnation)
        self.source: TaskSource = self._source or KafkaSource(s, self.name, self.standby)
        self.outages = RedisOutages(on_lost=self._redis_lost, on_back=self._redis_back, max_delay=max_delay_for(s))
        warn_if_lease_shorter_than_a_failover(s)
        ctx = WorkerContext(self.name, s, self.standby, self.events,
                            GuardedStore(self.live, self.claims, self.outages), self.source)
        self.hooks = hooks = Hooks(self.middleware, ctx)
        self.executor = Executor(
            s.concurrency, worker_name=self.name, max_result_bytes=s.max_result_bytes, grace=s.time_limit_grace,
            warn_after=s.warn_running_after, before_run=lambda job: hooks.call("before_run", job),
            after_run=hooks.after_run, on_hard_limit=lambda job: hooks.call("on_hard_limit", job),
            on_long_running=lambda job, elapsed: hooks.call("on_long_running", job, elapsed), confirm=self._confirm,
            confirm_after=s.lease / 3, progress=ProgressWriter.of(self.redis, s, self.incarnation))
        self.dispatch = Dispatcher(
            s, self.registry, self.name, tracker=self.tracker, claims=self.claims,
            rejects=RejectStore(self.redis, s), live=self.live, source=self.source, executor=self.executor,
            hooks=hooks, outages=self.outages, commit=self._commit)
        self.placement = Placement(self.redis, self.keys, self.source, self.tracker, self.outages, hooks,
                                   probe=None if self._source else broker_epoch_probe(s))
        self.intake = Intake(s, self.registry, self.name, tracker=self.tracker, source=self.source,
                             placement=self.placement, outages=self.outages, hooks=hooks, events=self.events)
        self.housekeeping = Housekeeping(
            s, self.name, client=self.redis, keys=self.keys, live=self.live, tracker=self.tracker,
            intake=self.intake, placement=self.placement, outages=self.outages, hooks=hooks, commit=self._commit,
            publish_snapshot=self._publish_snapshot, stopped=self._stop, started_at=self.started_at,
            cancel_run=self.dispatch.cancel)
        # Known before the first assignment: commits are noted with it, and judged by it.
        self.placement.check_broker_epoch()
        hooks.notice("connected", kafka=s.kafka_bootstrap, topic=s.topic)
        self._publish_snapshot()
        producer = getattr(self.source, "producer", None)
        self.heartbeat = HeartbeatThread(producer=producer, topic=s.heartbeat_topic, interval=s.heartbeat_interval,
                                         snapshot=self.snapshot)
        self.renewer = LeaseRenewer(lease=s.lease, claims=self.held_claims, renew=self._renew)

    @property
    def paused(self) -> bool:
        """Paused by a `pause` command (until `resume`)."""
        return self.intake.paused

    @property
    def done(self) -> int:
        return self.dispatch.done

    @property
    def failed(self) -> int:
        return self.dispatch.failed

    def snapshot(self) -> dict[str, Any]:
        """The loop's latest published state (safe from any thread: replaced, never mutated)."""
        return self._snapshot

    def held_claims(self) -> tuple[tuple[str, str], ...]:
        """(task id, fence) of every task claimed here and not settled yet (safe from any thread:
        replaced, never mutated). Published after each step, not with the periodic snapshot: a loop
        that blocks right after claiming (a broker call) must not leave its new claims unrenewed."""
        return self.dispatch.held

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
        self.hooks.notice("worker_joined", standby=self.standby, concurrency=self.settings.concurrency)
        self.executor.start()
        self.heartbeat.start()
        self.renewer.start()
        try:
            while not (self._stop.is_set() and (not self.dispatch.running or self._abandon)):
                self._iterate()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self.dispatch.running:  # abandoned on a second signal: let the next owner claim them at once
            self.dispatch.give_back_running()
        self.executor.stop()
        self.dispatch.flush(final=True)
        self._commit()
        self.heartbeat.stop()
        self.renewer.stop()
        self._publish_snapshot(state="stopping")
        self.heartbeat.beat()
        # The goodbye heartbeat may be lost with the broker (everything stopping at once): say it in Redis too.
        self.outages.call(lambda: self.live.mark_left(self.name, self.incarnation), False)
        self.heartbeat.join(timeout=2)
        self.source.close()
        self.hooks.notice("worker_left", done=self.done, failed=self.failed)
        self.events.close()
        self.redis.close()

    # -- one turn of the loop -----------------------------------------------------------
    def _iterate(self) -> None:
        d = self.dispatch
        self.intake.apply_rebalances()
        d.start_suspect_when_alone()
        finished = d.take_finished()
        claims = d.pick_claims(freed=len(finished),
                               accepting=not (self._stop.is_set() or self.paused or self.outages.down))
        if self.outages.down:  # wait out the outage's backoff; keep what finished
            d.unsent[0].extend(finished)
        elif finished or claims or d.unsent[0] or d.unsent[1]:
            d.step(finished, claims)
        self.housekeeping.run(busy=bool(d.running))
        self._wait()

    def _commit(self) -> None:
        offsets = {p: o for p in self.tracker.partitions if (o := self.tracker.commit_point(p)) is not None}
        self.source.remember_lows(self.tracker.low_offsets())
        if not offsets:
            return
        if not self.source.flush():  # dead letters and republished retries go out first
            return
        if self.source.commit(offsets, self.placement.epoch or ""):
            for p, o in offsets.items():
                self.tracker.committed(p, o)
            self.hooks.call("after_commit", offsets)

    def _publish_snapshot(self, state: str | None = None) -> None:
        running = tuple(self.dispatch.running.values())
        busy = len(running)
        now = time.monotonic()
        # Every 0.1 s, but the per-partition view walks every buffered record (hundreds held for a rate
        # limit): once a second is plenty for what reads it (heartbeats every few seconds), and at once
        # when the partitions owned change.
        partitions = self.tracker.partitions
        if (state is not None or now - self._described_at >= 1.0
                or [d["partition"] for d in self._partition_state] != partitions):
            slot_free = busy < self.settings.concurrency
            self._partition_state, self._described_at = tuple(self.tracker.describe(slot_free)), now
        self._snapshot = {
            "name": self.name, "incarnation": self.incarnation,
            "state": state or ("stopping" if self._stop.is_set() else "paused" if self.paused else
                               "busy" if busy else "standby" if self.standby and not self.tracker.partitions
                               else "idle" if self.intake.joined else "joining"),
            "current_task": running[0].task_id if running else None,
            "running": tuple(j.task_id for j in running),
            "concurrency": self.settings.concurrency,
            "done": self.done, "failed": self.failed, "partitions": tuple(partitions),
            "partition_state": self._partition_state,
        }

    # -- waiting ------------------------------------------------------------------
    def _wait(self) -> None:
        """Polls Kafka when due; waits only when there is nothing to start: for a task to finish
        (if any runs) or for records to come."""
        since = time.monotonic() - self.intake.last_poll
        buffered = self.tracker.buffered()
        poll_due = since > 0.1 or (since > 0.02 and buffered < self.settings.max_poll_records // 4)
        if not self.dispatch.starved:  # slots were filled and more may be ready: go round at once
            if poll_due:
                self.intake.poll(0)
            return
        if self.dispatch.running:
            self._wait_finished(0.0 if poll_due else 0.02)
            if poll_due:
                self.intake.poll(0)
            return
        wake = self.tracker.next_wakeup()
        self.intake.poll(min(0.1, max(0.0, wake - time.monotonic())) if wake else 0.1)

    def _wait_finished(self, timeout: float) -> None:
        try:
            f = self.executor.finished.get(timeout=timeout)
        except queue.Empty:
            return
        self.executor.finished.put(f)  # handled by the next turn, with the others

    # -- Redis outages (see `outages`) ---------------------------------------------------
    def _redis_lost(self, exc: Exception) -> None:
        self.hooks.notice("connection_lost", service="redis", error=str(exc))
        self.intake.close()  # keep polling (group membership), take nothing in

    def _redis_back(self) -> None:
        self.hooks.notice("connection_restored", service="redis")
        if not self.paused:
            self.intake.open()

    # -- called from other threads -------------------------------------------------------
    def _renew(self, claims: list[tuple[str, str]]) -> None:
        """Lease thread: extends the leases of the running tasks."""
        for (task_id, fence), ok in zip(claims, self.claims.renew(claims), strict=True):
            if not ok and (task_id, fence) in self.dispatch.held:  # still running: really lost
                log.warning("task %s: claim lost while running (its outcome will be discarded)", task_id)

    def _confirm(self, job: Job) -> bool:
        """Executor thread: is a claim made a while ago still ours? (Redis errors: treat as no.)"""
        try:
            return self.claims.confirm(job.task_id, job.run.fence)
        except REDIS_ERRORS:
            return False

"""The worker: a member of the consumer group that runs tasks exactly once.

The loop is "poll, claim, run, complete, commit":

* Polled records wait in one queue per partition and run in partition order,
  so offsets are committed contiguously. A task waiting out its retry
  backoff holds back only its own partition; the others keep running.
* Each claim, and each completion plus the next claim, is one atomic Lua step
  in Redis (`Backend.step`): finished tasks are skipped, a live claim of
  another worker is waited out, a completion counts only while its fence
  token is current.
* Offsets are committed only after the outcomes before them are stored.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from yadtq import scripts
from yadtq.assignor import StandbyAwareAssignor
from yadtq.backend import Backend, connect_redis
from yadtq.broker import ensure_topic, make_consumer, make_producer
from yadtq.config import Settings
from yadtq.errors import MessageError, TaskError
from yadtq.heartbeat import HeartbeatThread
from yadtq.live import LiveState
from yadtq.logs import EventLog
from yadtq.messages import ControlMessage, TaskMessage, decode
from yadtq.middleware import Middleware
from yadtq.steps import StepChannel
from yadtq.tasks import Registry, TaskContext
from yadtq.timelimit import time_limit

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Job:
    """One record from the tasks topic, while this worker holds it."""

    partition: int
    offset: int
    raw: bytes | None
    message: TaskMessage | None = None
    not_before: float = 0.0
    fence: str | None = None
    attempt: int = 0
    result: Any = None
    error: str | None = None
    started: float = 0.0
    outcome: str = ""
    duration: float = 0.0
    problem: tuple[str, str | None, str | None] | None = None  # (error, task id, task name)
    control: ControlMessage | None = None


class Worker:
    def __init__(self, settings: Settings, registry: Registry, name: str, *,
                 standby: bool = False, middleware: Sequence[Middleware] = (),
                 events: EventLog | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.name = name
        self.standby = standby
        self.middleware = list(middleware)
        self.incarnation = f"{name}:{uuid.uuid4().hex[:12]}"
        self.events = events or EventLog(settings, f"worker-{name}")
        self.started_at = time.time()
        self.done = 0
        self.failed = 0
        self.queues: dict[int, collections.deque[Job]] = {}
        self.current: Job | None = None
        self._stop = threading.Event()
        self._abandon = False
        self._uncommitted: dict[int, int] = {}
        self._rewind: dict[int, int] = {}  # partition -> first offset dropped unfinished at revoke
        self._last_commit = 0.0
        self._last_end_check = 0.0
        self._last_poll = 0.0
        self._rr = 0
        # Tasks claimed in the round trip that stored an earlier outcome, with their verdicts.
        self._ahead: collections.deque[tuple[Job, list[Any]]] = collections.deque()
        # Claiming ahead skips the before_claim hook's moment, and pipelining the
        # after_complete one: each only when no middleware needs that moment exact.
        self._claim_ahead = 0 if any(m.wants_before_claim for m in self.middleware) else settings.claim_ahead
        self._pipelined = self._claim_ahead > 0 and not any(m.wants_after_complete for m in self.middleware)

    # -- lifecycle ---------------------------------------------------------
    def connect(self) -> None:
        """Connects to Redis and Kafka; raises `BackendUnavailable`/`BrokerUnavailable`."""
        s = self.settings
        self.redis = connect_redis(s)
        self.backend = Backend(self.redis, s)
        self.live = LiveState(self.redis, s)
        self.channel = StepChannel(self.redis, scripts.STEP, self._redis_lost)
        ensure_topic(s, s.topic, s.partitions)
        ensure_topic(s, s.heartbeat_topic, 1)
        self.producer = make_producer(s, linger_ms=0)
        self.assignor = StandbyAwareAssignor(self.standby)
        self.consumer = make_consumer(s, s.group, client_id=self.name,
                                      partition_assignment_strategy=[self.assignor])
        self.consumer.subscribe([s.topic], listener=_Listener(self))
        self.events.emit("connected", worker=self.name, kafka=s.kafka_bootstrap, topic=s.topic)
        self.heartbeat = HeartbeatThread(producer=self.producer, topic=s.heartbeat_topic,
                                         interval=s.heartbeat_interval, lease=s.lease,
                                         snapshot=self.snapshot, renew=self.backend.renew_many)

    def snapshot(self) -> dict[str, Any]:
        job = self.current
        state = "stopping" if self._stop.is_set() else "busy" if job else (
            "standby" if self.standby and not self.queues else "idle")
        # Every claim this worker holds, so the heartbeat thread keeps their leases alive.
        claims = [(job.message.task_id, job.fence)] if job and job.message and job.fence else []
        claims += [(j.message.task_id, v[1]) for j, v in self._ahead_copy() if v[0] == "run" and j.message]
        return {"name": self.name, "incarnation": self.incarnation, "state": state,
                "current_task": job.message.task_id if job and job.message else None, "claims": claims,
                "done": self.done, "failed": self.failed, "partitions": sorted(self.queues)}

    def _ahead_copy(self) -> list[tuple[Job, list[Any]]]:
        """The claims made ahead, read from the heartbeat thread while the loop may change them."""
        while True:
            try:
                return list(self._ahead)
            except RuntimeError:  # mutated during the copy: copy again
                continue

    def stop(self) -> None:
        """Asks the loop to stop after the task in hand (safe from signal handlers)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """First SIGINT/SIGTERM: finish the task in hand, then leave. Second: abandon it."""
        def handle(signum: int, frame: object) -> None:
            if self._stop.is_set() and self.current is not None:
                self._abandon = True
                raise KeyboardInterrupt
            log.info("signal %d: stopping after the current task", signum)
            self.stop()
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)

    def run(self) -> None:
        """Serves until `stop()`, a completed `end`, or a signal."""
        self.events.emit("worker_joined", worker=self.name, standby=self.standby)
        self.heartbeat.start()
        try:
            self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Tasks claimed ahead run next, in the order claimed.
            job = self._ahead[0][0] if self._ahead else self._next_ready()
            if job is None:
                self._commit(force=False)
                self._poll(self._idle_wait())
                self._check_end()
                continue
            self._handle(job)
            if not self._ahead and self._poll_due():
                self._commit(force=False)
                self._poll(0)
                self._check_end()

    def _poll_due(self) -> bool:
        """Poll often enough to stay in the group and keep the queues fed, but not
        per task: a poll costs about a millisecond even with nothing to wait for."""
        elapsed = time.monotonic() - self._last_poll
        return elapsed > 0.1 or (elapsed > 0.02 and self._buffered() < self.settings.max_poll_records // 4)

    def _shutdown(self) -> None:
        self._release_ahead()
        self.heartbeat.stop()
        try:
            self._commit(force=True)
        except (KafkaError, redis.RedisError) as exc:
            log.warning("final commit failed: %s", exc)
        self.heartbeat.beat()
        self.heartbeat.join(timeout=2)
        self.consumer.close(autocommit=False)
        self.channel.close()
        self.producer.flush(timeout=5)
        self.producer.close(timeout=5)
        self.events.emit("worker_left", worker=self.name, done=self.done, failed=self.failed)
        self.events.close()
        self.redis.close()

    # -- polling and partition queues ---------------------------------------
    def _poll(self, timeout: float) -> None:
        batches = self.consumer.poll(timeout_ms=int(timeout * 1000),
                                     max_records=self.settings.max_poll_records)
        self._last_poll = time.monotonic()
        self.events.flush()
        for tp, records in batches.items():
            q = self.queues.setdefault(tp.partition, collections.deque())
            for rec in records:
                q.append(Job(rec.partition, rec.offset, rec.value))

    def _buffered(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def _next_ready(self) -> Job | None:
        """The head of the next partition (round-robin) whose head may run now."""
        parts = [p for p, q in self.queues.items() if q]
        now = time.time()
        for i in range(len(parts)):
            p = parts[(self._rr + i) % len(parts)]
            head = self.queues[p][0]
            if head.not_before <= now:
                self._rr = (self._rr + i + 1) % max(len(parts), 1)
                return head
        return None

    def _idle_wait(self) -> float:
        waits = [q[0].not_before - time.time() for q in self.queues.values() if q]
        return max(0.0, min([1.0, *waits]))

    def _pop(self, job: Job) -> None:
        q = self.queues.get(job.partition)
        if q and q[0] is job:
            q.popleft()

    def _finish(self, job: Job) -> None:
        """The job's record is dealt with: drop it and mark its offset committable."""
        self._pop(job)
        self._uncommitted[job.partition] = job.offset + 1

    def revoke(self, partitions: list[int]) -> None:
        """Partitions taken away: confirm stored outcomes, drop what is not finished.

        Runs on kafka-python's IO thread, where a blocking commit is refused; the
        offsets not committed here are redelivered to the new owner, whose claim
        skips the finished tasks.
        """
        self._release_ahead()
        self._drain()
        for p in partitions:
            dropped = self.queues.pop(p, None)
            if dropped:
                self._rewind[p] = dropped[0].offset
            self._uncommitted.pop(p, None)
        self.events.emit("partitions_revoked", worker=self.name, partitions=partitions)
        self.events.flush()
        if partitions:  # the farm echoes this line, as it does "assigned partitions"
            log.info("%s revoked partitions %s", self.name, partitions)

    def assign(self, partitions: list[int]) -> None:
        for p in partitions:
            self.queues.setdefault(p, collections.deque())
            # kafka-python keeps the fetch position of a partition that comes
            # back to the same member: without this seek, the records polled
            # but dropped at revoke would never be delivered again.
            if p in self._rewind:
                self.consumer.seek(TopicPartition(self.settings.topic, p), self._rewind[p])
        self._rewind.clear()
        self.events.emit("partitions_assigned", worker=self.name, partitions=partitions)
        self.events.flush()
        log.info("%s assigned partitions %s", self.name, partitions)

    def _commit(self, force: bool) -> None:
        self._drain()  # offsets move only past outcomes Redis has confirmed
        if not self._uncommitted:
            return
        now = time.monotonic()
        if not force and now - self._last_commit < 0.05:
            return
        offsets = {TopicPartition(self.settings.topic, p): OffsetAndMetadata(o, "", -1)
                   for p, o in self._uncommitted.items()}
        self.producer.flush(timeout=self.settings.connect_timeout)  # dead letters first
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group moved on; the new owner sees finished tasks and skips them.
            log.warning("commit refused (rebalanced): %s", exc)
        self._uncommitted.clear()
        self._last_commit = now
        for m in self.middleware:
            m.after_commit(self, {tp.partition: om.offset for tp, om in offsets.items()})

    # -- one record ----------------------------------------------------------
    def _parse(self, job: Job) -> str:
        """Reads the record once: "task" (claimable), "control", or "bad" (`job.problem` says why)."""
        if job.message is not None:
            return "task"
        if job.problem is not None:
            return "bad"
        try:
            msg = decode(job.raw, self.settings.max_message_bytes)
        except MessageError as exc:
            job.problem = (str(exc), exc.task_id, None)
            return "bad"
        if isinstance(msg, ControlMessage):
            job.control = msg
            return "control"
        self.events.emit("task_received", task_id=msg.task_id, task=msg.task, worker=self.name,
                         partition=job.partition, offset=job.offset)
        try:
            self.registry.get(msg.task).check_args(msg.args, msg.kwargs)
        except TaskError as exc:
            job.problem = (str(exc), msg.task_id, msg.task)
            return "bad"
        job.message = msg
        return "task"

    def _handle(self, job: Job) -> None:
        kind = self._parse(job)
        if kind == "control":
            assert job.control is not None
            self._control(job, job.control)
            return
        if kind == "bad":
            assert job.problem is not None
            self._reject(job, *job.problem)
            return
        if self._ahead and self._ahead[0][0] is job:
            verdict = self._ahead.popleft()[1]
        else:
            for m in self.middleware:
                m.before_claim(self, job)
            verdict = self._call(None, None, [job])[0]
        self._on_claim(job, verdict)

    def _call(self, complete: tuple[str, str, str, str, str] | None, done: Job | None,
              claims: list[Job]) -> list[Any]:
        """One synchronous step: settles every outcome sent before it, then returns
        this step's claim verdicts (this step's own outcome, if any, is settled too)."""
        args = self.backend.step_args(self.name, self.incarnation, time.time() + self.settings.lease, complete,
                                      [(j.message, j.partition, j.offset) for j in claims if j.message])
        earlier, reply = self.channel.call(args)
        for r, job in earlier:
            self._settle(r[0], job)
        if complete is not None:
            assert done is not None
            self._settle(reply[0], done)
            return reply[1:]
        return reply

    def _drain(self) -> None:
        for reply, job in self.channel.drain():
            self._settle(reply[0], job)

    def _redis_lost(self, exc: Exception) -> None:
        self.events.emit("connection_lost", worker=self.name, service="redis", error=str(exc))

    def _on_claim(self, job: Job, verdict: list[Any]) -> None:
        assert job.message is not None
        kind = verdict[0]
        if kind == "done":
            self.events.emit("task_skipped", task_id=job.message.task_id, worker=self.name,
                             partition=job.partition, offset=job.offset, status=verdict[1])
            self._finish(job)
            return
        if kind == "busy":
            # Another live worker holds it: wait for its outcome or its lease to lapse.
            job.not_before = min(float(verdict[1]), time.time() + 0.5)
            self._release_ahead(job.partition)
            return
        _, fence, attempts, name, args, kwargs, tries, limit, failures = verdict
        job.fence, job.attempt = fence, int(attempts)
        self._execute(job, name, json.loads(args), json.loads(kwargs),
                      int(tries or self.settings.tries), float(limit) if limit else None, int(failures or 0))

    def _release_ahead(self, partition: int | None = None) -> None:
        """Undoes claims made ahead (of one partition, or all) for tasks that will not run now."""
        keep, drop = collections.deque(), []
        for job, verdict in self._ahead:
            (drop if partition is None or job.partition == partition else keep).append((job, verdict))
        self._ahead = keep
        claims = [(j.message.task_id, v[1]) for j, v in drop if v[0] == "run" and j.message]
        if claims:
            self._retry_io(lambda: self.backend.release(claims))

    def _execute(self, job: Job, name: str, args: list[Any], kwargs: dict[str, Any],
                 tries: int, limit: float | None, failures: int) -> None:
        msg = job.message
        assert msg is not None
        task = self.registry.get(name)
        limit = limit or task.time_limit or self.settings.time_limit or None
        self.current = job
        job.started = time.time()
        self.events.emit("task_started", task_id=msg.task_id, task=name, worker=self.name,
                         partition=job.partition, offset=job.offset, attempt=job.attempt)
        for m in self.middleware:
            m.before_run(self, job)
        outcome = "success"
        try:
            with time_limit(limit):
                job.result = task.run(args, kwargs, TaskContext(msg.task_id, name, job.attempt, self.name))
        except KeyboardInterrupt:
            if not self._abandon:
                raise
            self._release(job)
            return
        except Exception as exc:  # a task's own failure: recorded, retried, never fatal
            outcome, job.error = "error", f"{type(exc).__name__}: {exc}"
        if outcome == "success":
            try:
                json.dumps(job.result)
            except (TypeError, ValueError) as exc:
                outcome, job.error, job.result = "failed", f"result is not JSON-serialisable: {exc}", None
        if outcome == "error":
            outcome = "retry" if failures + 1 < (task.tries or tries) else "failed"
        for m in self.middleware:
            m.after_run(self, job, outcome)
        self._complete(job, outcome)

    def _complete(self, job: Job, outcome: str) -> None:
        """Stores the outcome at once; claims the next tasks in the same step when due."""
        msg = job.message
        assert msg is not None and job.fence is not None
        result = json.dumps(job.result) if outcome == "success" else "null"
        job.outcome, job.duration = outcome, round(time.time() - job.started, 6)
        if outcome == "retry":
            delay = min(self.settings.retry_backoff * 2 ** (job.attempt - 1), self.settings.retry_backoff_max)
            job.not_before = time.time() + delay * random.uniform(0.8, 1.2)
            self._release_ahead(job.partition)  # nothing of this partition may overtake it
        else:
            self._pop(job)
        self.current = None
        complete = (msg.task_id, job.fence, outcome, result, job.error or "")
        claims: list[Job] = []
        if self._claim_ahead and not self._ahead and not self._stop.is_set() and not self._poll_due():
            claims = self._claimable()
        if claims or not self._pipelined or outcome != "success":
            self._ahead.extend(zip(claims, self._call(complete, job, claims)))
        else:
            args = self.backend.step_args(self.name, self.incarnation, 0, complete, [])
            self.channel.send(args, job)  # settled at the next drain, before any commit

    def _claimable(self) -> list[Job]:
        """Up to `claim_ahead` ready task records, each partition's from its head, in order."""
        out: list[Job] = []
        now = time.time()
        for q in self.queues.values():
            for job in q:
                if len(out) >= self._claim_ahead or job.not_before > now or job.fence is not None:
                    break
                if self._parse(job) != "task":
                    break
                out.append(job)
        return out

    def _settle(self, verdict: str, job: Job) -> None:
        """The stored outcome's reply is in: events, counters, committable offset."""
        msg = job.message
        assert msg is not None
        outcome = job.outcome
        common = dict(task_id=msg.task_id, task=msg.task, worker=self.name, partition=job.partition,
                      offset=job.offset, attempt=job.attempt, duration=job.duration)
        if verdict == "fenced":
            self.events.emit("task_fenced", **common)
            log.warning("task %s: outcome discarded, claim lost to another worker", msg.task_id)
            self._finish(job)
            return
        for m in self.middleware:
            m.after_complete(self, job, outcome)
        if outcome == "retry":
            job.fence = None
            self.events.emit("task_retried", error=job.error, status="queued", **common)
            return
        if outcome == "success":
            self.done += 1
            self.events.emit("task_succeeded", status="success", **common)
        else:
            self.failed += 1
            self.events.emit("task_failed", status="failed", error=job.error, **common)
            self._dead_letter(job, msg.task_id, msg.task, job.error or "failed")
        self._finish(job)

    def _release(self, job: Job) -> None:
        """Abandoned mid-run on a second signal: let the next owner claim it at once."""
        self.current = None
        if job.message and job.fence:
            self.backend.renew(job.message.task_id, job.fence, 0)
        log.warning("abandoned task %s", job.message.task_id if job.message else "?")

    def _reject(self, job: Job, error: str, task_id: str | None, task_name: str | None) -> None:
        """A record that cannot run: failed record (if an id is readable), dead letter, commit."""
        log.warning("partition %d offset %d rejected: %s", job.partition, job.offset, error)
        if task_id:
            self._retry_io(lambda: self.backend.reject(task_id, task_name or "", error))
        self.events.emit("task_rejected", task_id=task_id, task=task_name, worker=self.name,
                         partition=job.partition, offset=job.offset, error=error, status="failed")
        self._dead_letter(job, task_id, task_name, error)
        self.failed += 1
        self._finish(job)

    def _dead_letter(self, job: Job, task_id: str | None, task_name: str | None, error: str) -> None:
        """Keeps the raw record: in Redis (for `yadtq dlq`) and on the dead-letter topic."""
        entry = {"task_id": task_id, "task": task_name, "error": error, "ts": time.time(),
                 "topic": self.settings.topic, "partition": job.partition, "offset": job.offset,
                 "raw": (job.raw or b"")[:4096].decode("utf-8", errors="replace")}
        self._retry_io(lambda: self.live.add_dead_letter(entry))
        self.producer.send(self.settings.dlq_topic, value=job.raw or b"",
                           key=task_id.encode() if task_id else None,
                           headers=[("error", error[:1000].encode())])

    def _control(self, job: Job, msg: ControlMessage) -> None:
        self.events.emit("end_received", worker=self.name, partition=job.partition, offset=job.offset)
        partitions = len(self.consumer.partitions_for_topic(self.settings.topic) or ()) or self.settings.partitions
        self._retry_io(lambda: self.live.mark_end(self.settings.topic, msg.id, job.partition, partitions))
        self._finish(job)
        self._commit(force=True)

    def _check_end(self) -> None:
        now = time.monotonic()
        if now - self._last_end_check < 0.5:
            return
        self._last_end_check = now
        completed = self._retry_io(lambda: self.live.end_completed_at(self.settings.topic))
        if completed and completed > self.started_at:
            log.info("end of run: every partition drained; stopping")
            self.stop()

    def _retry_io(self, call: Callable[[], T]) -> T:
        """Runs a Redis call, waiting out a Redis restart instead of dying."""
        delay = 0.2
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self._stop.is_set() and self.current is None:
                    raise
                self.events.emit("connection_lost", worker=self.name, service="redis", error=str(exc))
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.revoke(sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker.assign(sorted(tp.partition for tp in assigned))

"""The client API: submit tasks, track them by id.

    q = YADTQ.from_env()
    tid = q.submit("add", [1, 2])
    q.result(tid, timeout=10)          # -> 3

A task id is made on the client (uuid4) unless the caller gives one; the
`queued` record is written to Redis before the message is published, so a
status query never races the worker.

Submit is all or nothing: when publishing fails, the records this submit made
are undone (atomically, unless a worker claimed one meanwhile) and the error
is raised, so nothing runs later behind the caller's back. Submitting again
with the same id is idempotent: one task, one run.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from kafka.errors import KafkaError

from yadtq.broker.clients import EpochProbe, close_producer, ensure_topic, make_producer
from yadtq.client.building import TaskSpec, make_message, resolve_queue, spec_call, validate_call
from yadtq.client.changes import follow, wait_done
from yadtq.client.edge_check import EdgeCheck
from yadtq.client.flow_controls import FlowControls
from yadtq.client.workflows import Workflows, workflow_record
from yadtq.config import Settings
from yadtq.errors import BrokerUnavailable, TaskFailed
from yadtq.store.announcements import Announcements
from yadtq.store.backend import Backend, TaskRecord
from yadtq.store.broker_epoch import EpochRecords
from yadtq.store.connection import answers_ping, connect_redis
from yadtq.store.live_state import LiveState
from yadtq.store.queue_stats import QueueDepth, QueueStats
from yadtq.store.readiness import waiting_note
from yadtq.store.retention import check_result_ttl
from yadtq.store.worker_commands import send_command
from yadtq.store.workflows import WorkflowState, WorkflowStore, is_workflow_id
from yadtq.task.canvas import Canvas, Signature, signature
from yadtq.task.messages import TaskMessage, key_partition
from yadtq.task.status import Status
from yadtq.task.timing import Timing, When
from yadtq.task.trace_context import headers as trace_headers
from yadtq.task.trace_context import submit_span

log = logging.getLogger(__name__)


class YADTQ(FlowControls):
    def __init__(self, settings: Settings, *, create_topic: bool = True) -> None:
        self.settings = settings
        self.redis = connect_redis(settings)
        self.backend = Backend(self.redis, settings)
        self.live = LiveState(self.redis, settings)
        self.edge = EdgeCheck(self.redis, self.backend.keys)
        self.queue_stats = QueueStats(self.redis, self.backend.keys, self.backend.space)
        self.announcements = Announcements(self.redis, self.backend.keys, self.backend.space)
        self._producer: Any = None
        self._create_topic = create_topic
        self._partitions: dict[str, list[int]] = {}  # per topic, as the producer sees it
        self._next = itertools.count()
        self.workflows = Workflows(WorkflowStore(self.redis, settings), self.edge,
                                   lambda ms: self._send(ms, wait=True), settings.tries, self.announcements)

    @classmethod
    def from_env(cls, **overrides: Any) -> YADTQ:
        return cls(Settings.from_env(**overrides))

    def __enter__(self) -> YADTQ:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Waits up to 5 s for the records not confirmed yet (`publish(..., wait=False)`), then closes.
        One the broker has not taken by then is still sent in the background until its delivery timeout
        (publish_timeout), then dropped: its task stays `queued` with no message (`requeue` or
        `requeue_stale` publishes it again; the monitor does so by itself after a broker lost its log)."""
        if self._producer is not None:
            close_producer(self._producer, self.settings, timeout=5)
            self._producer = None
        self.redis.close()

    @property
    def producer(self) -> Any:
        """Made on first use, so read-only clients (dashboard, CLI status) need no broker."""
        if self._producer is None:
            if self._create_topic:
                self._remember_epoch()
            self._producer = make_producer(self.settings)
            self._partitions = {}
            self._partitions_of(self.settings.topic)
        return self._producer

    def _partitions_of(self, topic: str) -> list[int]:
        """The partitions of a queue's topic (made the first time this client sends to it)."""
        if topic not in self._partitions:
            if self._create_topic:
                ensure_topic(self.settings, topic, self.settings.partitions)
            found = self.producer.partitions_for(topic)
            self._partitions[topic] = sorted(found) if found else list(range(self.settings.partitions))
        return self._partitions[topic]

    def queue_of(self, task: str, queue: str | None = None) -> str | None:
        """Where a submit of `task` goes: `queue` when given, else the queue its `@task(queue=...)`
        names (in this process's registry, or as live workers announce it); None: the default queue."""
        return resolve_queue(task, queue, self.edge.queue_of)

    def _remember_epoch(self) -> None:
        """Notes the broker's epoch the first time this Redis meets the broker, so a monitor
        started after a broker restart still sees that the broker lost its log."""
        epochs = EpochRecords(self.redis, self.backend.keys, self.backend.space)
        if epochs.stored() is not None:
            return
        probe = EpochProbe(self.settings)
        try:
            epochs.remember(probe.current(), first_only=True)
        except KafkaError as exc:
            log.warning("could not read the broker's epoch: %s", exc)
        finally:
            probe.close()

    # -- submit ------------------------------------------------------------
    def message(self, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
                tries: int | None = None, time_limit: float | None = None,
                task_id: str | None = None, key: str | None = None, unchecked: bool = False,
                countdown: float | None = None, eta: When | None = None, expires: When | None = None,
                result_ttl: float | None = None, queue: str | None = None) -> TaskMessage:
        """Builds a validated message (raises `MessageError` for a bad one).

        `countdown` (seconds) or `eta` (datetime or epoch seconds) delays it: it is `scheduled`
        until due, then published. `expires` (seconds from submit, or a datetime): not started
        by then, it ends `expired` and never runs (yadtq.task.timing). `queue` overrides the queue the
        task's `@task(queue=...)` names (see `queue_of`).

        Unless `unchecked`, the call is checked against what live workers serve
        (`SubmissionRefused`: unknown task, or arguments that fit no announced signature).
        """
        validate_call(task, args, tries, key)
        check_result_ttl(result_ttl)
        if not unchecked:
            self.edge.check(task, args, kwargs or {})
        return make_message(self.settings, task, args, kwargs, tries=tries, time_limit=time_limit,
                            task_id=task_id, key=key, timing=Timing.of(countdown, eta, expires, task_id),
                            result_ttl=result_ttl, queue=self.queue_of(task, queue))

    def submit(self, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
               **options: Any) -> str:
        """Records the task as queued, publishes it, waits for the broker's ack; returns its id.

        Options: tries, time_limit, task_id, key, unchecked, countdown, eta, expires, result_ttl, queue
        (see `message`);
        a delayed task is recorded `scheduled` and published when due (no broker needed now).
        `link=add.s(10)` runs a callback with its result first, `link_error=sig` one with its id
        and error first, if it fails (see yadtq.client.workflows)."""
        link, link_error = options.pop("link", None), options.pop("link_error", None)
        if link is not None or link_error is not None:
            return self.workflows.submit_linked(self.message(task, args, kwargs, **options), link, link_error)
        return self.publish([self.message(task, args, kwargs, **options)], wait=True)[0]

    def submit_many(self, specs: Iterable[TaskSpec], *, unchecked: bool = False) -> list[str]:
        """Bulk submit: one Redis pipeline, one producer flush."""
        return self.publish([self._spec(s, unchecked) for s in specs], wait=True)

    def publish(self, messages: Sequence[TaskMessage], wait: bool = True) -> list[str]:
        """Records then sends `messages` round-robin over the partitions; returns their ids.

        A message whose id already has a record with the same body is sent only
        while that record is still `queued` (its earlier message may be lost);
        a running or finished task is left alone. Raises `MessageError` for an
        id taken by another body, `BrokerUnavailable` when publishing fails; in
        both cases the records this call made are undone first (all or nothing).
        With `wait=False` nothing is confirmed, so nothing can be undone.
        """
        with submit_span([m.task_id for m in messages], [m.task for m in messages]):
            token = uuid.uuid4().hex
            verdicts = self.backend.record_queued(messages, self.settings.tries, token)
            made = [m.task_id for m, v in zip(messages, verdicts, strict=True) if v in ("new", Status.SCHEDULED)]
            to_send = [m for m, v in zip(messages, verdicts, strict=True) if v in ("new", Status.QUEUED)]
            try:
                self._send(to_send, wait)
            except BaseException:
                self.backend.unsubmit(made, token)
                raise
        return [m.task_id for m in messages]

    def _send(self, messages: Sequence[TaskMessage], wait: bool) -> None:
        """Publishes `messages`; raises `BrokerUnavailable` when that fails.

        After a failure the producer is dropped, so the next call starts afresh:
        the topic made again if the broker lost it, its partitions read again.
        """
        if not messages:
            return
        producer = self.producer
        futures = []
        trace = trace_headers() or None  # the submitter's trace context (yadtq[otel]), or none
        try:
            for m in messages:
                topic = self.settings.topic_for(m.queue)
                parts = self._partitions_of(topic)
                partition = (key_partition(m.key, parts) if m.key is not None
                             else parts[next(self._next) % len(parts)])
                futures.append(producer.send(topic, key=m.record_key,
                                             value=m.encode(), partition=partition, headers=trace))
            if wait:
                deadline = time.monotonic() + self.settings.publish_timeout
                producer.flush(timeout=self.settings.publish_timeout)
                for f in futures:
                    f.get(timeout=max(0.1, deadline - time.monotonic()))
        except KafkaError as exc:
            self._drop_producer()
            raise BrokerUnavailable(self.settings.kafka_bootstrap, f"publish failed: {exc}") from None

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer, self.settings)

    def send_again(self, messages: Sequence[TaskMessage]) -> None:
        """Publishes messages of tasks that already have records (their messages were lost).

        No record is written or undone: a duplicate message is harmless (the
        claim skips a finished task and never runs one twice at once). Raises
        `BrokerUnavailable` or `KafkaError` when publishing fails.
        """
        self._send(messages, wait=True)

    def requeue(self, task_id: str, fresh: bool = True) -> str:
        """Runs a task again from its stored record; returns its id.

        Accepts a failed task, a `queued` one whose message was lost, and a
        `processing` one whose lease lapsed (its worker is gone); refuses a
        success and a task running under a live lease (`YADTQError`).
        `fresh` resets its attempts and its cut-off runs (a quarantined task gets
        `YADTQ_MAX_LOST_RUNS` again) and drops its expiry (it runs now); otherwise
        its cut-off run is counted, and a task past its expiry ends `expired`.
        """
        _ = self.producer  # connect first: a dead broker must not leave the record half-changed
        message = self.backend.reset_to_queued(task_id, fresh)
        # Queued again, so not dead: its dead letters go before it is sent, as its next failure adds a fresh one.
        self.live.forget_dead_letters(task_id, message.queue)
        self._send([message], wait=True)  # on failure it stays `queued`: requeue again
        return task_id

    def cancel(self, task_id: str, by: str = "client") -> TaskRecord:
        """Cancels a task that has not finished; returns its record, now `cancelled`. A waiting
        task never runs; a running one is interrupted (about half a second later, as a time limit
        would interrupt it) and nothing it returns is stored. Raises `TaskNotFound`, or
        `TaskNotCancellable` (a `YADTQError`) for a task that finished already."""
        return self.backend.cancel(task_id, by=by)

    def requeue_stale(self, older_than: float, limit: int = 1000) -> list[str]:
        """Publishes again the tasks `queued` for more than `older_than` seconds (`yadtq requeue
        --stale`; the monitor does this by itself only after a broker restart).
        """
        ids = self.backend.ids_older_than(Status.QUEUED, time.time() - older_than, limit)
        if not ids:
            return []
        records = [r for r in self.backend.get_many(ids) if r.status == Status.QUEUED]
        # The topics may have gone with the broker: make sure they are there again.
        for topic in {self.settings.topic_for(r.queue) for r in records}:
            ensure_topic(self.settings, topic, self.settings.partitions)
        self.send_again([r.message() for r in records])
        return [r.task_id for r in records]

    def _spec(self, spec: TaskSpec, unchecked: bool = False) -> TaskMessage:
        if isinstance(spec, TaskMessage):
            return spec
        task, args, kwargs, options = spec_call(spec, unchecked)
        return self.message(task, args, kwargs, **options)

    def queues(self, window: float = 60.0) -> list[QueueDepth]:
        """Per queue (the default one, and every one tasks were submitted to): tasks waiting,
        how long the oldest has waited, tasks finished per second over `window`, dead letters."""
        return self.queue_stats.all(window=window)
    # -- workers and health ------------------------------------------------
    def command_worker(self, worker: str, command: str) -> None:
        """Queues pause, resume or stop for one worker (it takes it within about a second);
        raises ValueError for an unknown command."""
        send_command(self.redis, self.live.keys, worker, command)

    def redis_answers(self) -> bool:
        """True when Redis answers PING now (a health check: never raises)."""
        return answers_ping(self.redis)

    # -- track -------------------------------------------------------------
    def status(self, task_id: str) -> TaskRecord:
        """The stored record; raises `TaskNotFound` for an unknown id."""
        return self.backend.get(task_id)

    def wait(self, task_id: str, timeout: float | None = None,
             poll: float | None = None) -> TaskRecord:
        """Waits for a final status, woken when it is stored (and re-reading the record every `poll`
        seconds, default `result_poll`, should pub/sub be unavailable); raises `ResultTimeout`, `TaskNotFound`.
        A workflow's id: waits for the workflow to end (success or failed); the record has its status,
        result and error (its nodes: `workflow(id)`)."""
        if is_workflow_id(task_id) and self.workflows.store.exists(task_id):
            return workflow_record(self.workflows.wait(task_id, timeout, poll or self.settings.result_poll))
        return wait_done(self.backend, self.announcements, task_id, timeout, poll or self.settings.result_poll)

    def follow(self, task_id: str, timeout: float | None = None) -> Iterator[TaskRecord]:
        """The record now, then each time its status or progress changes, until it is final
        (`yadtq status --follow`); raises `ResultTimeout`, `TaskNotFound`."""
        return follow(self.backend, self.announcements, task_id, timeout, self.settings.result_poll)

    def waiting_note(self) -> str | None:
        """Why no task can start now (workers still joining their group, none alive), or None."""
        return waiting_note(self.live.workers().values())

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        """The task's (or workflow's) result; raises `TaskFailed` with its error, `ResultTimeout`, `TaskNotFound`."""
        if is_workflow_id(task_id) and self.workflows.store.exists(task_id):
            return self.workflows.result(task_id, timeout)
        rec = wait_done(self.backend, self.announcements, task_id, timeout, self.settings.result_poll)
        if rec.status == Status.FAILED:
            raise TaskFailed(task_id, rec.error or "unknown error", rec.attempts)
        return rec.result

    # -- workflows (yadtq.client.workflows) --------------------------------
    def signature(self, task: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                  **options: Any) -> Signature:
        """A signature of a task this client does not import: `q.signature("add", [1, 2])`."""
        return signature(task, args, kwargs, **options)

    def submit_workflow(self, wf: Canvas | Mapping[str, Any], *, workflow_id: str | None = None,
                        unchecked: bool = False) -> str:
        """Records and starts a chain, group, chord or signature; returns the workflow id
        (`result(id)` waits for its final result)."""
        return self.workflows.submit(wf if not isinstance(wf, Mapping) else dict(wf), workflow_id=workflow_id,
                                     unchecked=unchecked)

    def workflow(self, workflow_id: str) -> WorkflowState:
        """The state of every node; raises `TaskNotFound` for an unknown id."""
        return self.workflows.get(workflow_id)

"""The client side of workflows: submit a canvas, wait for its end (used by `YADTQ`).

    wf = chord(group(add.s(1, 1), add.s(2, 2)), total.s())
    wid = q.submit_workflow(wf)
    q.result(wid, timeout=10)            # -> 6.0
    q.workflow(wid).nodes                # each node's state

Submitting records the whole workflow and its first task records in one Lua call, then
publishes those first messages. If publishing fails, nothing is undone: the records wait in
the outbox and any worker publishes them within `HOLD` seconds (the workflow is accepted once
recorded; submitting again with the same `workflow_id` is idempotent).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka.errors import KafkaError

from yadtq.client.building import resolve_queue
from yadtq.client.edge_check import EdgeCheck
from yadtq.errors import BrokerUnavailable, MessageError, ResultTimeout, SubmissionRefused, TaskFailed, TaskNotFound
from yadtq.store.announcements import Announcements
from yadtq.store.backend import TaskRecord
from yadtq.store.workflows import Started, WorkflowState, WorkflowStore, new_workflow_id, plan
from yadtq.task.canvas import CANVAS_TYPES, Canvas, Signature, chain, chord, from_dict, group
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status
from yadtq.task.timing import NO_TIMING
from yadtq.task.trace_context import workflow_span

log = logging.getLogger(__name__)

# A workflow's final states: `wait` returns on them (a failed one resumes only if its member is requeued).
ENDED = (Status.SUCCESS, Status.FAILED)


class Workflows:
    def __init__(self, store: WorkflowStore, edge: EdgeCheck, send: Callable[[Sequence[TaskMessage]], None],
                 default_tries: int, announcements: Announcements | None = None) -> None:
        self.store = store
        self.announcements = announcements
        self.edge = edge
        self.send = send
        self.default_tries = default_tries

    def submit(self, wf: Canvas | dict[str, Any], *, workflow_id: str | None = None, unchecked: bool = False,
               errback: Signature | None = None) -> str:
        """Records and starts `wf` (a canvas or its JSON description); returns the workflow id."""
        canvas = as_canvas(wf)
        if not unchecked:
            check_names(canvas if errback is None else group(canvas, errback), self.edge.served())
        wid = workflow_id or new_workflow_id()
        with workflow_span(wid):
            started = self.store.start(plan(wid, canvas, self.default_tries, errback, self.queue_of))
            if started.messages:
                try:
                    self.send(started.messages)
                except (BrokerUnavailable, KafkaError) as exc:
                    log_outbox(wid, started, exc)
                    return wid
                self.store.confirm(started)
        return wid

    def queue_of(self, task: str, queue: str | None) -> str | None:
        """A step's queue: its signature's, else its task's `@task(queue=...)` (here or as workers announce it)."""
        return resolve_queue(task, queue, self.edge.queue_of)

    def submit_linked(self, m: TaskMessage, link: Any, link_error: Any) -> str:
        """One task with callbacks: `link` gets its result first, `link_error` its id and error."""
        canvas, errback = linked(m, link, link_error)
        # its workflow on the task's shard where Redis is a cluster (the task keeps its own id)
        self.submit(canvas, workflow_id=self.store.new_id(near=m.task_id), errback=errback, unchecked=True)
        return m.task_id

    def get(self, workflow_id: str) -> WorkflowState:
        found = self.store.get(workflow_id)
        if found is None:
            raise TaskNotFound(workflow_id)
        return found

    def wait(self, workflow_id: str, timeout: float | None = None, poll: float = 0.5) -> WorkflowState:
        """Waits for the workflow to end, as `YADTQ.wait` for a task: returns its state (every node,
        as `get`) once it is `success` or `failed`, raising for neither; `ResultTimeout`, `TaskNotFound`."""
        self._until_done(workflow_id, timeout, poll)
        return self.get(workflow_id)

    def result(self, workflow_id: str, timeout: float | None = None, poll: float = 0.5) -> Any:
        """The final result; raises `TaskFailed` (a member's error), `ResultTimeout`, `TaskNotFound`."""
        return outcome(workflow_id, self._until_done(workflow_id, timeout, poll))[1]

    def _until_done(self, workflow_id: str, timeout: float | None, poll: float) -> tuple[str, Any, str | None]:
        """The status read (status, result, error) once the workflow has ended.

        Woken by the engine's announcement when the workflow ends (subscribed before the first read,
        so none is missed); re-reads every `poll` seconds besides, for when pub/sub is unavailable."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with contextlib.ExitStack() as stack:
            changes = stack.enter_context(self.announcements.listen([workflow_id])) if self.announcements else None
            while True:
                got = self.store.status(workflow_id)
                if got is None:
                    raise TaskNotFound(workflow_id)
                if got[0] in ENDED:
                    return got
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ResultTimeout(workflow_id, timeout or 0, got[0])
                wait = poll if left is None else min(poll, left)
                if changes is not None:
                    changes.wait(wait)
                else:
                    time.sleep(min(wait, 0.02))


def workflow_record(state: WorkflowState) -> TaskRecord:
    """A workflow's outcome as a task record (what `YADTQ.wait` returns for a workflow's id): its id,
    task "workflow", status, result and error, created as `submitted`; its nodes are in `state`."""
    return TaskRecord(state.workflow_id, "workflow", state.status, result=state.result, error=state.error,
                      submitted=state.created, finished=state.finished)


def as_canvas(wf: Canvas | Mapping[str, Any]) -> Canvas:
    """A canvas, or one built from its JSON description."""
    return wf if isinstance(wf, CANVAS_TYPES) else from_dict(dict(wf))


def check_names(canvas: Canvas, served: Mapping[str, Any]) -> None:
    """Refuses a workflow naming a task no live worker serves (arguments are checked by the
    worker: a chained step's first argument is not known yet)."""
    if not served:
        return
    for name in sorted({s.task for s in _leaves(canvas)}):
        if name not in served:
            close = difflib.get_close_matches(name, list(served), n=1, cutoff=0.6)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            raise SubmissionRefused(f"no live worker serves task {name!r}{guess}")


def linked(m: TaskMessage, link: Any, link_error: Any) -> tuple[Canvas, Signature | None]:
    """The workflow of one task with callbacks: (its canvas, its error callback)."""
    if m.key is not None or m.timing != NO_TIMING:
        raise MessageError("an ordering key, countdown, eta or expires cannot be combined with link= or "
                           "link_error=")
    sig = Signature(m.task, m.args, dict(m.kwargs), tries=m.tries, time_limit=m.time_limit, task_id=m.task_id,
                    queue=m.queue)
    links = _signatures(link, "link")
    errbacks = _signatures(link_error, "link_error")
    if len(errbacks) > 1:
        raise MessageError("link_error takes one signature")
    canvas: Canvas = sig if not links else chain(sig, links[0] if len(links) == 1 else group(links))
    return canvas, errbacks[0] if errbacks else None


def log_outbox(workflow_id: str, started: Started, exc: Exception) -> None:
    log.warning("workflow %s recorded; its first %d task(s) wait in the outbox (%s)",
                workflow_id, len(started.messages), exc)


def outcome(workflow_id: str, got: tuple[str, Any, str | None] | None) -> tuple[str, Any]:
    """(status, result) of a workflow's status read; raises `TaskNotFound`, or `TaskFailed` with
    the failing member's error."""
    if got is None:
        raise TaskNotFound(workflow_id)
    status, result, error = got
    if status == Status.FAILED:
        raise TaskFailed(workflow_id, error or "a member failed", 0)
    return status, result


def _signatures(x: Any, what: str) -> list[Signature]:
    if x is None:
        return []
    items = [x] if isinstance(x, Signature) else list(x) if isinstance(x, Iterable) else [x]
    for s in items:
        if not isinstance(s, Signature):
            raise MessageError(f"{what} takes a signature (task.s(...)) or a list of them")
    return items


def _leaves(c: Canvas) -> list[Signature]:
    if isinstance(c, Signature):
        return [c]
    if isinstance(c, chain):
        return [s for step in c.steps for s in _leaves(step)]
    if isinstance(c, group):
        return [s for m in c.members for s in _leaves(m)]
    if isinstance(c, chord):
        return _leaves(c.header) + _leaves(c.body)
    raise MessageError(f"not a workflow node: {type(c).__name__}")

"""Workflows in Redis: a workflow's plan, its start, and the state of every node.

The engine itself is Lua (yadtq/store/lua/lib/workflow.lua), included into every script that
ends a task: the step that stores a member's outcome also counts it and records the next step,
in one atomic call. This module lays a canvas (yadtq.task.canvas) out as the hash fields that
engine reads, starts it (workflow_start.lua), and reads a workflow back.

Member task ids are `<workflow id>.<node>` unless a signature names its own; workflow ids
start with `wf-`, so a client tells them from task ids without a lookup.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from yadtq.config import Settings
from yadtq.errors import MessageError
from yadtq.store.connection import RedisClient, decoded_hash
from yadtq.store.keys import Keys
from yadtq.store.replies import json_field
from yadtq.store.scripts import bind
from yadtq.task.canvas import MAX_NODES, Canvas, Signature, chain, chord, group
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status

WORKFLOW_PREFIX = "wf-"
# How long the first steps stay armed in the outbox while the submitter publishes them.
HOLD = 30.0


def new_workflow_id() -> str:
    return WORKFLOW_PREFIX + uuid.uuid4().hex


def is_workflow_id(some_id: str) -> bool:
    return some_id.startswith(WORKFLOW_PREFIX)


def workflow_key(keys: Keys, workflow_id: str) -> str:
    return f"{keys.prefix}workflow:{workflow_id}"


@dataclass
class Plan:
    """A canvas laid out as numbered nodes (0 is the root), in the engine's hash fields."""

    workflow_id: str
    default_tries: int
    fields: dict[str, str] = field(default_factory=dict)
    task_ids: list[str] = field(default_factory=list)
    count: int = 0
    _seen: set[str] = field(default_factory=set, repr=False)

    def add(self, node: Canvas, parent: int, position: int) -> int:
        i = self.count
        self.count += 1
        if self.count > MAX_NODES:
            raise MessageError(f"a workflow has at most {MAX_NODES} nodes")
        self.fields[f"p:{i}"] = f"{parent},{position}"
        if isinstance(node, Signature):
            self.fields[f"k:{i}"] = "task"
            self._task(i, node)
            return i
        children: Sequence[Canvas]
        if isinstance(node, chain):
            kind, children = "chain", node.steps
        elif isinstance(node, group):
            kind, children = "group", node.members
        elif isinstance(node, chord):
            kind, children = "chord", (node.header, node.body)
        else:
            raise MessageError(f"not a workflow node: {type(node).__name__}")
        self.fields[f"k:{i}"] = kind
        self.fields[f"c:{i}"] = ",".join(str(self.add(c, i, pos)) for pos, c in enumerate(children, 1))
        return i

    def add_errback(self, of: int, errback: Signature) -> None:
        """An error callback of task node `of`: runs with (failed task id, error, *its args)."""
        j = self.add(errback, -2, of)
        spec = json.loads(self.fields[f"spec:{of}"])
        spec["errback"] = str(j)
        self.fields[f"spec:{of}"] = json.dumps(spec)

    def _task(self, i: int, sig: Signature) -> None:
        tid = sig.task_id or f"{self.workflow_id}.{i}"
        if tid in self._seen:
            raise MessageError(f"task id {tid!r} appears twice in the workflow")
        self._seen.add(tid)
        self.task_ids.append(tid)
        spec = {"id": tid, "task": sig.task, "args": json.dumps(list(sig.args)), "kwargs": json.dumps(sig.kwargs),
                "tries": str(sig.tries or self.default_tries),
                "time_limit": "" if sig.time_limit is None else repr(float(sig.time_limit)),
                "immutable": sig.immutable}
        self.fields[f"spec:{i}"] = json.dumps(spec)


def plan(workflow_id: str, canvas: Canvas, default_tries: int, errback: Signature | None = None) -> Plan:
    """Lays `canvas` out; `errback` (a single task's `link_error`) serves its first task."""
    p = Plan(workflow_id, default_tries)
    p.add(canvas, -1, 0)
    if errback is not None:
        p.add_errback(next(i for i in range(p.count) if f"spec:{i}" in p.fields), errback)
    p.fields["nodes"] = str(p.count)
    p.fields["shape"] = json.dumps(canvas.to_dict())
    return p


@dataclass(frozen=True)
class NodeState:
    index: int
    kind: str
    parent: int  # -1: the root; -2: an error callback (its `position` is the node it serves)
    position: int
    state: str  # waiting | queued | processing | running | success | failed | cancelled
    children: list[int]
    task: str | None = None
    task_id: str | None = None
    result: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "parent": self.parent, "position": self.position,
                "state": self.state, "children": self.children, "task": self.task, "task_id": self.task_id,
                "result": self.result, "error": self.error}


@dataclass(frozen=True)
class WorkflowState:
    workflow_id: str
    status: str  # running | success | failed
    result: Any
    error: str | None
    created: float | None
    finished: float | None
    nodes: list[NodeState]
    shape: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.status in (Status.SUCCESS, Status.FAILED)

    def as_dict(self) -> dict[str, Any]:
        return {"workflow-id": self.workflow_id, "status": self.status, "result": self.result,
                "error": self.error, "created": self.created, "finished": self.finished,
                "nodes": [n.as_dict() for n in self.nodes]}


@dataclass(frozen=True)
class Started:
    """A new workflow's first task messages, armed in the outbox until `confirm`."""

    messages: list[TaskMessage]
    armed: str
    new: bool


class WorkflowStore:
    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._start = bind(client, "workflow_start")
        self._untake = bind(client, "untake")

    def start(self, p: Plan, hold: float = HOLD) -> Started:
        """Records and starts the workflow (idempotent by its id); returns what to publish now,
        armed in the outbox for `hold` seconds (then any worker publishes them)."""
        args: list[Any] = [p.workflow_id, hold, int(self.settings.result_ttl)]
        for k, v in p.fields.items():
            args += [k, v]
        raw = self._start(keys=[workflow_key(self.keys, p.workflow_id), self.keys.status(Status.QUEUED)], args=args)
        if str(raw[0]) != "new":
            return Started([], "", False)
        armed, ids = str(raw[1]), [str(x) for x in raw[2]]
        pipe = self.r.pipeline(transaction=False)
        for tid in ids:
            pipe.hmget(self.keys.task(tid), "task", "args", "kwargs", "tries", "time_limit", "submitted")
        messages = []
        for tid, row in zip(ids, pipe.execute(), strict=True):
            task, a, kw, tries, limit, sub = (x.decode() if isinstance(x, bytes) else x for x in row)
            messages.append(TaskMessage(tid, task, tuple(json.loads(a)), json.loads(kw), int(tries),
                                        float(sub), float(limit) if limit else None))
        return Started(messages, armed, True)

    def confirm(self, started: Started) -> None:
        """The first messages are on the topic: take them out of the outbox."""
        if started.messages:
            self._untake(keys=[self.keys.retries],
                         args=[x for m in started.messages for x in (m.task_id, started.armed)])

    def recent(self, limit: int = 50) -> list[str]:
        """Ids of the newest workflows (the index keeps the latest 10,000), newest first."""
        return [str(x) for x in self.r.zrevrange(f"{self.keys.prefix}workflows", 0, max(limit, 1) - 1)]

    def exists(self, workflow_id: str) -> bool:
        return bool(self.r.exists(workflow_key(self.keys, workflow_id)))

    def status(self, workflow_id: str) -> tuple[str, Any, str | None] | None:
        """(status, result, error) in one read; None for an unknown id."""
        st, res, err = (x.decode() if isinstance(x, bytes) else x for x in
                        self.r.hmget(workflow_key(self.keys, workflow_id), "state", "result", "error"))
        if st is None:
            return None
        return str(st), json_field(res, None), err

    def get(self, workflow_id: str) -> WorkflowState | None:
        """Every node's state (task nodes from their task records); None for an unknown id."""
        h = decoded_hash(self.r.hgetall(workflow_key(self.keys, workflow_id)))
        if not h:
            return None
        count = int(h.get("nodes") or 0)
        specs = {i: json.loads(h[f"spec:{i}"]) for i in range(count) if f"spec:{i}" in h}
        pipe = self.r.pipeline(transaction=False)
        for i in specs:
            pipe.hmget(self.keys.task(specs[i]["id"]), "status", "error")
        live = dict(zip(specs, pipe.execute(), strict=True))
        nodes = []
        for i in range(count):
            parent, _, position = h.get(f"p:{i}", "-1,0").partition(",")
            kids = [int(c) for c in h.get(f"c:{i}", "").split(",") if c]
            state = h.get(f"s:{i}", "waiting")
            error = h.get(f"e:{i}")
            spec = specs.get(i)
            if spec is not None:
                rec_status, rec_error = (x.decode() if isinstance(x, bytes) else x for x in live[i])
                if rec_status and state != Status.SUCCESS:
                    state, error = str(rec_status), error or rec_error
            nodes.append(NodeState(i, h.get(f"k:{i}", "?"), int(parent), int(position or 0), state, kids,
                                   spec["task"] if spec else None, spec["id"] if spec else None,
                                   json_field(h.get(f"r:{i}"), None), error))
        return WorkflowState(workflow_id, h.get("state", "running"), json_field(h.get("result"), None),
                             h.get("error") or None, _float(h.get("created")), _float(h.get("finished")), nodes,
                             json_field(h.get("shape"), {}))


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None

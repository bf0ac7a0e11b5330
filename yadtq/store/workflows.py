"""Workflows in Redis: a workflow's plan, its start, and the state of every node.

The engine itself is Lua (yadtq/store/lua/lib/workflow.lua), included into every script that
ends a task: the step that stores a member's outcome also counts it and records the next step,
in one atomic call. This module lays a canvas (yadtq.task.canvas) out as the hash fields that
engine reads, starts it (workflow_start.lua), and reads a workflow back (the calls and their
replies: yadtq.store.workflow_calls, shared with the asyncio store).

Member task ids are `<workflow id>.<node>` unless a signature names its own; workflow ids
start with `wf-`, so a client tells them from task ids without a lookup.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from yadtq.config import DEFAULT_QUEUE, Settings
from yadtq.errors import MessageError
from yadtq.store.batch import Batch
from yadtq.store.connection import RedisClient, decoded_hash
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.scripts import bind
from yadtq.store.shard_reads import merged_top
from yadtq.store.workflow_calls import (
    LIVE_FIELDS,
    MESSAGE_FIELDS,
    NOT_NEW,
    STATUS_FIELDS,
    message_of,
    start_call,
    start_reply,
    state_of,
    status_of,
    task_specs,
    untake_call,
)
from yadtq.store.workflow_calls import (
    NodeState as NodeState,
)
from yadtq.store.workflow_calls import (
    Started as Started,
)
from yadtq.store.workflow_calls import (
    WorkflowState as WorkflowState,
)
from yadtq.store.workflow_calls import (
    workflow_key as workflow_key,
)
from yadtq.task.canvas import MAX_NODES, Canvas, Signature, chain, chord, group

WORKFLOW_PREFIX = "wf-"
QueueOf = Callable[[str, str | None], str | None]
# How long the first steps stay armed in the outbox while the submitter publishes them.
HOLD = 30.0


def new_workflow_id() -> str:
    return WORKFLOW_PREFIX + uuid.uuid4().hex


def is_workflow_id(some_id: str) -> bool:
    return some_id.startswith(WORKFLOW_PREFIX)


@dataclass
class Plan:
    """A canvas laid out as numbered nodes (0 is the root), in the engine's hash fields."""

    workflow_id: str
    default_tries: int
    # (task, the signature's queue) -> the queue it goes to (None: the default one); None: as given.
    queue_of: QueueOf | None = None
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
        queue = self.queue_of(sig.task, sig.queue) if self.queue_of is not None else sig.queue
        if queue is not None and queue != DEFAULT_QUEUE:  # the engine records it and publishes to its topic
            spec["queue"] = queue
        self.fields[f"spec:{i}"] = json.dumps(spec)


def plan(workflow_id: str, canvas: Canvas, default_tries: int, errback: Signature | None = None,
         queue_of: QueueOf | None = None) -> Plan:
    """Lays `canvas` out; `errback` (a single task's `link_error`) serves its first task; `queue_of`
    picks each task's queue (the client's `resolve_queue`: the signature's, else the task's declared one)."""
    p = Plan(workflow_id, default_tries, queue_of)
    p.add(canvas, -1, 0)
    if errback is not None:
        p.add_errback(next(i for i in range(p.count) if f"spec:{i}" in p.fields), errback)
    p.fields["nodes"] = str(p.count)
    p.fields["shape"] = json.dumps(canvas.to_dict())
    return p


def workflow_id_near(space: KeySpace, near: str) -> str:
    """A new workflow id whose workflow can hold task `near` as a member: on a Redis Cluster, one on
    `near`'s shard (drawn until it lands there: `shard_count` draws on average)."""
    wid = new_workflow_id()
    while space.for_task(wid) != space.for_task(near):
        wid = new_workflow_id()
    return wid


class WorkflowStore:
    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        # On a Redis Cluster a workflow's hash and its members' records share its shard (docs/redis-cluster.md).
        self.space = KeySpace.of(settings)
        self.keys = self.space.base
        self._start = bind(client, "workflow_start")
        self._untake = bind(client, "untake")

    def new_id(self, near: str) -> str:
        """A new workflow id whose workflow can hold task `near` as a member (`workflow_id_near`)."""
        return workflow_id_near(self.space, near)

    @staticmethod
    def shard_of_plan(space: KeySpace, p: Plan) -> Keys:
        """The keys of `p`'s workflow, where every member must be too (on a cluster its engine steps
        would span two slots otherwise): raises MessageError for a member elsewhere."""
        k = space.for_task(p.workflow_id)
        strays = [t for t in p.task_ids if space.for_task(t) != k]
        if strays:
            raise MessageError(f"on a Redis Cluster a workflow's task ids must be its id, a dot and a suffix "
                               f"({p.workflow_id}.<anything>); {strays[0]!r} is not")
        return k

    def start(self, p: Plan, hold: float = HOLD) -> Started:
        """Records and starts the workflow (idempotent by its id); returns what to publish now,
        armed in the outbox for `hold` seconds (then any worker publishes them)."""
        k = self.shard_of_plan(self.space, p)
        keys, args = start_call(k, p.workflow_id, p.fields, hold, self.settings.result_ttl)
        new, armed, ids = start_reply(self._start(keys=keys, args=args))
        if not new:
            return NOT_NEW
        pipe = self.r.pipeline(transaction=False)
        for tid in ids:
            pipe.hmget(k.task(tid), *MESSAGE_FIELDS)
        return Started([message_of(tid, row) for tid, row in zip(ids, pipe.execute(), strict=True)], armed, True)

    def confirm(self, started: Started) -> None:
        """The first messages are on the topic: take them out of the outbox."""
        if started.messages:
            keys, args = untake_call(self.space.for_task(started.messages[0].task_id), started)
            self._untake(keys=keys, args=args)

    def recent(self, limit: int = 50) -> list[str]:
        """Ids of the newest workflows (the index keeps the latest 10,000), newest first."""
        if self.space.sharded:
            return merged_top(self.r, [f"{k.prefix}workflows" for k in self.space.shards], 0, limit, True)
        return [str(x) for x in self.r.zrevrange(f"{self.keys.prefix}workflows", 0, max(limit, 1) - 1)]

    def exists(self, workflow_id: str) -> bool:
        return bool(self.r.exists(workflow_key(self.space.for_task(workflow_id), workflow_id)))

    def status(self, workflow_id: str) -> tuple[str, Any, str | None] | None:
        """(status, result, error) in one read; None for an unknown id."""
        return status_of(self.r.hmget(workflow_key(self.space.for_task(workflow_id), workflow_id), *STATUS_FIELDS))

    def recent_statuses(self, limit: int = 50) -> list[tuple[str, tuple[str, Any, str | None]]]:
        """(id, (status, result, error)) of the newest workflows, newest first; their hashes read in one
        batch (one round trip per server), those expired since the index was read left out."""
        ids = self.recent(limit)
        batch = Batch(self.r)
        for wid in ids:
            key = workflow_key(self.space.for_task(wid), wid)
            batch.on(key).hmget(key, *STATUS_FIELDS)
        return [(wid, got) for wid, raw in zip(ids, batch.execute(), strict=True) if (got := status_of(raw))]

    def get(self, workflow_id: str) -> WorkflowState | None:
        """Every node's state (task nodes from their task records); None for an unknown id."""
        k = self.space.for_task(workflow_id)
        h = decoded_hash(self.r.hgetall(workflow_key(k, workflow_id)))
        if not h:
            return None
        specs = task_specs(h)
        pipe = self.r.pipeline(transaction=False)
        for spec in specs.values():
            pipe.hmget(k.task(spec["id"]), *LIVE_FIELDS)
        return state_of(workflow_id, h, specs, pipe.execute())

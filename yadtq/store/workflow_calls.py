"""The KEYS and ARGV of the workflow scripts, and what their replies and hashes mean: shared by the
blocking store (yadtq.store.workflows) and the asyncio one (yadtq.store.async_workflows), so both
send the same call and read a workflow back the same way. Pure: no I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yadtq.store.keys import Keys
from yadtq.store.replies import json_field
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status

Call = tuple[list[str], list[Any]]

# The task record fields a first step's message is rebuilt from, and those a node's state is read from.
MESSAGE_FIELDS = ("task", "args", "kwargs", "tries", "time_limit", "submitted", "queue")
LIVE_FIELDS = ("status", "error")
STATUS_FIELDS = ("state", "result", "error")


def workflow_key(keys: Keys, workflow_id: str) -> str:
    return f"{keys.prefix}workflow:{workflow_id}"


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


NOT_NEW = Started([], "", False)


def start_call(keys: Keys, workflow_id: str, fields: Mapping[str, str], hold: float, result_ttl: float) -> Call:
    """workflow_start.lua: records the plan's `fields` and its first task records, armed `hold` seconds."""
    args: list[Any] = [workflow_id, hold, int(result_ttl)]
    for k, v in fields.items():
        args += [k, v]
    return [workflow_key(keys, workflow_id), keys.status(Status.QUEUED)], args


def start_reply(raw: Any) -> tuple[bool, str, list[str]]:
    """(new, armed token, ids of the first tasks) from workflow_start.lua's reply."""
    if _text(raw[0]) != "new":
        return False, "", []
    return True, str(_text(raw[1])), [str(_text(x)) for x in raw[2]]


def message_of(task_id: str, row: Sequence[Any]) -> TaskMessage:
    """A first step's message from its record's `MESSAGE_FIELDS`."""
    task, a, kw, tries, limit, sub, queue = (_text(x) for x in row)
    return TaskMessage(task_id, str(task), tuple(json.loads(a)), json.loads(kw), int(tries), float(sub),
                       float(limit) if limit else None, queue=queue or None)


def untake_call(keys: Keys, started: Started) -> Call:
    """untake.lua: the first messages are on the topic, out of the outbox with them."""
    return [keys.retries], [x for m in started.messages for x in (m.task_id, started.armed)]


def status_of(row: Sequence[Any]) -> tuple[str, Any, str | None] | None:
    """(status, result, error) from the hash's `STATUS_FIELDS`; None for an unknown workflow."""
    st, res, err = (_text(x) for x in row)
    if st is None:
        return None
    return str(st), json_field(res, None), err


def task_specs(h: Mapping[str, str]) -> dict[int, dict[str, Any]]:
    """node -> its task spec, for the task nodes of a workflow hash."""
    count = int(h.get("nodes") or 0)
    return {i: json.loads(h[f"spec:{i}"]) for i in range(count) if f"spec:{i}" in h}


def state_of(workflow_id: str, h: Mapping[str, str], specs: Mapping[int, dict[str, Any]],
             live: Sequence[Sequence[Any]]) -> WorkflowState:
    """The workflow from its hash and its task nodes' records (`LIVE_FIELDS`, in `specs` order)."""
    rows = dict(zip(specs, live, strict=True))
    nodes = []
    for i in range(int(h.get("nodes") or 0)):
        parent, _, position = h.get(f"p:{i}", "-1,0").partition(",")
        kids = [int(c) for c in h.get(f"c:{i}", "").split(",") if c]
        state = h.get(f"s:{i}", "waiting")
        error = h.get(f"e:{i}")
        spec = specs.get(i)
        if spec is not None:
            rec_status, rec_error = (_text(x) for x in rows[i])
            if rec_status and state != Status.SUCCESS:
                state, error = str(rec_status), error or rec_error
        nodes.append(NodeState(i, h.get(f"k:{i}", "?"), int(parent), int(position or 0), state, kids,
                               spec["task"] if spec else None, spec["id"] if spec else None,
                               json_field(h.get(f"r:{i}"), None), error))
    return WorkflowState(workflow_id, h.get("state", "running"), json_field(h.get("result"), None),
                         h.get("error") or None, _float(h.get("created")), _float(h.get("finished")), nodes,
                         json_field(h.get("shape"), {}))


def _text(x: Any) -> Any:
    return x.decode() if isinstance(x, bytes) else x


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None

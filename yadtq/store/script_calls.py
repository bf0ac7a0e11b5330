"""The KEYS and ARGV of the client's script calls, and what their replies mean: shared by the
blocking backend (yadtq.store.backend) and the asyncio one (yadtq.store.async_backend), so both
send the same call and read its reply the same way. Pure: no I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from yadtq.config import DEFAULT_QUEUE
from yadtq.errors import MessageError, TaskNotFound, YADTQError
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.replies import CancelReply, SubmitReply, decode_flag
from yadtq.task.messages import TaskMessage
from yadtq.task.status import Status

# How long an undone submit's id refuses a message that reached the broker after all.
WITHDRAWN_TTL = 7 * 86_400

Call = tuple[list[str], list[Any]]

# Messages per submit.lua call: big enough that its fixed cost hardly counts, small enough that one call
# keeps Redis busy well under a millisecond or so (other clients wait while a script runs).
SUBMIT_CHUNK = 200


class TaskNotCancellable(YADTQError):
    """A finished task cannot be cancelled."""

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id} is {status}; only a task that has not finished can be cancelled")
        self.task_id = task_id
        self.status = status


def submit_call(keys: Keys, messages: Sequence[TaskMessage], default_tries: int, token: str) -> Call:
    """submit.lua for `messages` (all of `keys`' shard): each one's `queued` record unless its id has one already."""
    call_keys = [keys.status(Status.QUEUED), keys.broker_epoch, keys.scheduled, keys.status(Status.SCHEDULED)]
    args: list[Any] = []
    for m in messages:
        call_keys += [keys.task(m.task_id), keys.withdrawn(m.task_id), keys.queue_index(m.queue or DEFAULT_QUEUE)]
        args += [m.task_id, m.task, json.dumps(list(m.args)), json.dumps(m.kwargs), m.tries or default_tries,
                 m.time_limit or "", m.digest, token, *m.timing.lua_args(), m.key or "",
                 "" if m.result_ttl is None else m.result_ttl, m.queue or ""]
    return call_keys, args


def submit_calls(space: KeySpace, messages: Sequence[TaskMessage], default_tries: int,
                 token: str) -> tuple[list[tuple[list[int], Call]], dict[str, list[str]]]:
    """The submit.lua calls that record `messages`: one per shard and SUBMIT_CHUNK messages, each with the
    positions in `messages` of the messages it records (its replies come back in that order). A call's
    fixed cost (script lookup, Lua call, the client's packing) is paid per chunk, not per message.
    Also, per shard's set of queue names (what `yadtq queues` lists), the named queues of the messages
    recorded on that shard (the default queue is never listed there)."""
    calls = []
    named: dict[str, list[str]] = {}
    for keys, placed in space.group(messages, lambda m: m.task_id).items():
        for start in range(0, len(placed), SUBMIT_CHUNK):
            chunk = placed[start:start + SUBMIT_CHUNK]
            calls.append(([i for i, _ in chunk], submit_call(keys, [m for _, m in chunk], default_tries, token)))
        if queues := {m.queue for _, m in placed if m.queue and m.queue != DEFAULT_QUEUE}:
            named[keys.queues] = sorted(queues)
    return calls, named


def submit_replies(count: int, calls: Sequence[tuple[list[int], Call]], raws: Sequence[Any]) -> list[Any]:
    """One submit.lua reply per message, in the order of the `count` messages, from the replies of `calls`
    (`submit_calls`)."""
    replies: list[Any] = [None] * count
    for (positions, _), raw in zip(calls, raws, strict=True):
        for i, one in zip(positions, raw, strict=True):
            replies[i] = one
    return replies


def submit_verdicts(messages: Sequence[TaskMessage], replies: Sequence[Any]) -> list[str] | MessageError:
    """One verdict per message (`submit_verdict`), or the `MessageError` of the first id taken by another
    body: the caller undoes the records the call made (`made_ids`) before raising it."""
    try:
        return [submit_verdict(m, raw) for m, raw in zip(messages, replies, strict=True)]
    except MessageError as exc:
        return exc


def made_ids(messages: Sequence[TaskMessage], replies: Sequence[Any]) -> list[str]:
    """The ids whose records submit.lua made (its 'new' replies)."""
    return [m.task_id for m, raw in zip(messages, replies, strict=True) if SubmitReply.decode(raw).verdict == "new"]


def submit_verdict(m: TaskMessage, raw: Any) -> str:
    """"new" (or "scheduled": new and delayed), or the status of the record that had the id with
    the same body; raises `MessageError` when the id is taken by another body."""
    reply = SubmitReply.decode(raw)
    if reply.verdict == "foreign":
        raise MessageError(f"task id {m.task_id!r} is taken by a task with another body", m.task_id)
    new = "scheduled" if reply.status == Status.SCHEDULED else "new"
    return new if reply.verdict == "new" else reply.status


def unsubmit_call(keys: Keys, task_id: str, token: str) -> Call:
    return ([keys.task(task_id), keys.status(Status.QUEUED), keys.withdrawn(task_id), keys.status(Status.SCHEDULED),
             keys.scheduled],
            [task_id, token, WITHDRAWN_TTL])


def undone(task_ids: list[str], raws: list[Any]) -> list[str]:
    """The ids unsubmit.lua undid, from its replies."""
    return [tid for tid, raw in zip(task_ids, raws, strict=True) if decode_flag(raw)]


# cancel.lua answers 'moved' when a running task's worker is not the one the caller read: read again.
CANCEL_TRIES = 5


def cancel_call(keys: Keys, task_id: str, result_ttl: float, by: str, worker: str) -> Call:
    """`worker`: the record's `worker` as read just before (its command list gets a running task's cancel)."""
    return ([keys.task(task_id), keys.status(Status.QUEUED), keys.status(Status.CANCELLED), keys.events(task_id),
             keys.status(Status.SCHEDULED), keys.scheduled, keys.status(Status.PROCESSING), keys.control(worker)],
            [int(result_ttl), by, task_id, worker])


def check_cancelled(task_id: str, raw: Any, last_try: bool = True) -> bool:
    """True once cancel.lua cancelled the task; False when it asks for another try ('moved').
    Raises `TaskNotFound`, or `TaskNotCancellable` for a finished task."""
    got = CancelReply.decode(raw)
    if got.outcome == "missing":
        raise TaskNotFound(task_id)
    if got.outcome == "moved" and not last_try:
        return False
    if got.outcome != "ok":
        raise TaskNotCancellable(task_id, got.status or Status.PROCESSING)
    return True

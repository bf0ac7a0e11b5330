"""Typed replies of the record scripts (submit, unsubmit, requeue, cancel, reject, names, end marks).

A Lua script answers with a positional list; each reply type here reads one
script's list (its shape is in the script's header) once, in `decode`, so no
caller indexes a reply. The step's replies are in yadtq.store.claim_replies.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, NamedTuple

from yadtq.task.messages import TaskMessage


def decode_flag(raw: Any) -> bool:
    """A script that answers 1 (done) or 0 (refused): unsubmit, confirm, release, the name
    scripts, mark_end."""
    return bool(raw)


def json_field(raw: str | None, default: Any) -> Any:
    """A record field stored as JSON: `default` when absent, the raw text when it is not JSON."""
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class SubmitReply(NamedTuple):
    """submit.lua: {'new', status} | {'exists', status} | {'foreign', digest}."""

    verdict: Literal["new", "exists", "foreign"]
    # new: queued or scheduled; exists: the status of the record that already had this id (a Status)
    status: str = ""

    @classmethod
    def decode(cls, raw: Any) -> SubmitReply:
        kind = str(raw[0])
        if kind == "new":
            return cls("new", str(raw[1]) if len(raw) > 1 else "queued")
        if kind == "exists":
            return cls("exists", str(raw[1]))
        if kind == "foreign":
            return cls("foreign")
        raise ValueError(f"unknown submit reply {raw!r}")


class RequeueReply(NamedTuple):
    """requeue.lua: {'ok', task, args, kwargs, tries, time_limit, key, queue} | {'missing'} | {'moved', status}
    | {'running'} | {status} (a status that refuses a requeue: success)."""

    outcome: Literal["ok", "missing", "moved", "running", "refused"]
    status: str = ""  # moved: the status found instead of the one read; refused: the refusing status
    message: TaskMessage | None = None  # ok: the task to publish again

    @classmethod
    def decode(cls, raw: Any, task_id: str) -> RequeueReply:
        kind = str(raw[0])
        if kind == "ok":
            _, name, args, kwargs, tries, limit, key, *rest = raw
            queue = str(rest[0]) if rest and rest[0] else None
            return cls("ok", message=TaskMessage(
                task_id, name, tuple(json_field(args, [])), json_field(kwargs, {}), int(tries) if tries else None,
                time.time(), float(limit) if limit else None, str(key) if key else None, queue=queue))
        if kind == "missing":
            return cls("missing")
        if kind == "moved":
            return cls("moved", str(raw[1]))
        if kind == "running":
            return cls("running")
        return cls("refused", kind)


class CancelReply(NamedTuple):
    """cancel.lua: {'ok', time} | {'missing'} | {'moved'} (running on another worker than the caller
    read: read again) | {status} (a status that refuses: finished)."""

    outcome: Literal["ok", "missing", "moved", "refused"]
    status: str = ""  # refused: the task's status

    @classmethod
    def decode(cls, raw: Any) -> CancelReply:
        kind = str(raw[0])
        if kind in ("ok", "missing", "moved"):
            return cls(kind)  # type: ignore[arg-type]
        return cls("refused", kind)


class RejectReply(NamedTuple):
    """reject.lua: 'rejected' | 'foreign' (the id is another task's: untouched) | the status the task
    was left in (it had finished or was running)."""

    outcome: str

    @classmethod
    def decode(cls, raw: Any) -> RejectReply:
        return cls(str(raw))

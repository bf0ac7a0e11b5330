"""The line producer: `tail -f a_tasks.txt | yadtq produce TOPIC PARTITIONS`.

One task per line, either a JSON task message (the seeds' format, `task-id`
optional) or shorthand `add 1 2` (each argument read as JSON, else as a
string). Blank lines and `#` comments are skipped. A bad line is reported and
skipped; it never stops the stream. The line `end` sends the end marker to
every partition: workers drain and stop, then the monitor.
"""

from __future__ import annotations

import json
import select
import shlex
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from yadtq.client import YADTQ
from yadtq.errors import MessageError
from yadtq.messages import ControlMessage, TaskMessage, task_from_dict

FLUSH_EVERY = 500


def parse_line(line: str, q: YADTQ) -> TaskMessage | str | None:
    """A message, "end", or None for a line to skip. Raises `MessageError`."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.lower() == "end":
        return "end"
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise MessageError(f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise MessageError("expected a JSON object")
        body.setdefault("task-id", str(uuid.uuid4()))
        m = task_from_dict(body)
        return q.message(m.task, m.args, m.kwargs, tries=m.tries, time_limit=m.time_limit, task_id=m.task_id)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise MessageError(str(exc)) from None
    return q.message(words[0], [_value(w) for w in words[1:]])


def _value(word: str) -> Any:
    try:
        return json.loads(word)
    except ValueError:
        return word


@dataclass
class ProduceStats:
    sent: int = 0
    bad: int = 0
    ended: bool = False


def produce(q: YADTQ, lines: Iterable[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> ProduceStats:
    stats = ProduceStats()
    batch: list[TaskMessage] = []

    def flush() -> None:
        if batch:
            q.publish(batch, wait=True)
            stats.sent += len(batch)
            batch.clear()
            print(f"sent {stats.sent} task(s)", file=out, flush=True)

    last_flush = time.monotonic()
    for n, line in enumerate(lines, 1):
        try:
            parsed = parse_line(line, q)
        except MessageError as exc:
            stats.bad += 1
            print(f"line {n}: skipped: {exc}", file=err, flush=True)
            continue
        if parsed is None:
            continue
        if isinstance(parsed, str):  # "end"
            flush()
            send_end(q)
            stats.ended = True
            print(f"end sent to every partition of {q.settings.topic}", file=out, flush=True)
            break
        batch.append(parsed)
        # A piped `tail -f` delivers lines slowly: publish at once unless lines pour in.
        if len(batch) >= FLUSH_EVERY or time.monotonic() - last_flush > 0.2 or not _more_waiting(lines):
            flush()
            last_flush = time.monotonic()
    flush()
    return stats


def _more_waiting(lines: Iterable[str]) -> bool:
    """True when more input is ready now (so batching costs no latency)."""
    fileno = getattr(lines, "fileno", None)
    if fileno is None:
        return True
    try:
        return bool(select.select([fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def send_end(q: YADTQ) -> str:
    """Sends `end` to every partition, with the run's control token when one is set
    (workers then refuse an `end` without it); returns the end's id."""
    end_id = str(uuid.uuid4())
    producer = q.producer
    value = ControlMessage("end", end_id, q.settings.control_token).encode()
    for p in sorted(producer.partitions_for(q.settings.topic) or range(q.settings.partitions)):
        producer.send(q.settings.topic, value=value, partition=p)
    producer.flush(timeout=10)
    return end_id

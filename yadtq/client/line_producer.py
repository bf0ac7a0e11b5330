"""The line producer: `tail -f a_tasks.txt | yadtq produce TOPIC PARTITIONS`.

One task per line, either a JSON task message (the seeds' format, `task-id`
optional) or shorthand `add 1 2` (each argument read as JSON, else as a
string). Blank lines and `#` comments are skipped. A bad line is reported and
skipped; it never stops the stream. The line `end` sends the end marker to
every partition: workers drain and stop, then the monitor.

An unreachable or restarting broker never ends the stream: the producer
waits it out with backoff (a `connection_lost` / `connection_restored` event
pair in `producer.events.jsonl`) and sends the waiting lines when it returns.
Submit is all or nothing and ids are kept across attempts, so a retried
batch runs each task once.
"""

from __future__ import annotations

import json
import select
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TextIO, TypeVar

from kafka.errors import KafkaError

from yadtq.client.client import YADTQ
from yadtq.errors import BrokerUnavailable, MessageError
from yadtq.logs import EventLog
from yadtq.redaction import redact_url
from yadtq.task.messages import ControlMessage, TaskMessage, task_from_dict

FLUSH_EVERY = 500
BACKOFF_MAX = 10.0
T = TypeVar("T")


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
        checked = q.message(m.task, m.args, m.kwargs, tries=m.tries, time_limit=m.time_limit, task_id=m.task_id,
                            key=m.key, queue=m.queue)
        return replace(checked, timing=m.timing)  # "countdown", "eta", "expires" as read
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


class Patient:
    """Runs broker calls until they succeed, waiting out outages with backoff and
    reporting each outage once: `connection_lost`, then `connection_restored`."""

    def __init__(self, q: YADTQ, events: EventLog, err: TextIO) -> None:
        self.q, self.events, self.err = q, events, err
        self.sleep = time.sleep

    def __call__(self, call: Callable[[], T]) -> T:
        lost: float | None = None
        delay = 0.5
        while True:
            try:
                result = call()
            except BrokerUnavailable as exc:
                if lost is None:
                    lost = time.monotonic()
                    self.events.emit("connection_lost", service="kafka", error=exc.reason)
                    self.events.flush()
                    print(f"broker unavailable at {redact_url(self.q.settings.kafka_bootstrap)} ({exc.reason}); "
                          "waiting for it", file=self.err, flush=True)
                self.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if lost is not None:
                after = round(time.monotonic() - lost, 3)
                self.events.emit("connection_restored", service="kafka", after=after)
                self.events.flush()
                print(f"broker is back after {after:g}s", file=self.err, flush=True)
            return result


def produce(q: YADTQ, lines: Iterable[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr,
            events: EventLog | None = None) -> ProduceStats:
    """Sends the tasks of `lines`; never gives up on an unreachable broker (see the module)."""
    stats = ProduceStats()
    batch: list[TaskMessage] = []
    log = events or EventLog(q.settings, "producer")
    patient = Patient(q, log, err)

    def flush() -> None:
        if batch:
            patient(lambda: q.publish(batch, wait=True))
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
            patient(lambda: send_end(q))
            stats.ended = True
            print(f"end sent to every partition of {q.settings.topic}", file=out, flush=True)
            break
        batch.append(parsed)
        # A piped `tail -f` delivers lines slowly: publish at once unless lines pour in.
        if len(batch) >= FLUSH_EVERY or time.monotonic() - last_flush > 0.2 or not _more_waiting(lines):
            flush()
            last_flush = time.monotonic()
    flush()
    if events is None:
        log.close()
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
    try:
        futures = [producer.send(q.settings.topic, value=value, partition=p)
                   for p in sorted(producer.partitions_for(q.settings.topic) or range(q.settings.partitions))]
        producer.flush(timeout=10)
        for f in futures:
            f.get(timeout=q.settings.connect_timeout)
    except KafkaError as exc:
        raise BrokerUnavailable(q.settings.kafka_bootstrap, f"sending end failed: {exc}") from None
    return end_id

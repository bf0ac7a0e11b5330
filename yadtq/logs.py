"""Human-readable logs and the JSON-lines event stream, under `log_dir`.

Each process writes `<name>.log` and `<name>.events.jsonl`, one file each so
processes never interleave writes. Event fields (all optional but `ts`,
`event`, `process`): task_id, task, worker, partition, offset, attempt,
status, duration, error. The notebooks and `notebooks.analysis` read them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from yadtq import codec
from yadtq.config import Settings

EVENTS = (
    "connected", "connection_lost", "task_received", "task_started", "task_succeeded",
    "task_failed", "task_retried", "task_skipped", "task_rejected", "task_fenced",
    "worker_joined", "worker_left", "worker_died", "worker_alive",
    "partitions_assigned", "partitions_revoked", "end_received", "crash_injected", "tasks_requeued",
)


def setup_logging(settings: Settings, process: str, verbose: bool = False) -> None:
    """Console (stderr) plus `<log_dir>/<process>.log`."""
    Path(settings.log_dir).mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    root.addHandler(console)
    file = logging.FileHandler(Path(settings.log_dir) / f"{process}.log")
    file.setFormatter(fmt)
    root.addHandler(file)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    for name in ("kafka.cluster", "kafka.net.selector"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, KafkaNoise) for f in logger.filters):
            logger.addFilter(KafkaNoise())


class KafkaNoise(logging.Filter):
    """Drops kafka-python lines that ask nothing of a user: the broker-epoch probe's topic missing
    before its first write (it is made on demand), its own event loop running a step late
    (on a busy machine; the consumer catches up, and our own timers say when it does not), and a
    read still pending on a connection its client has just closed (`close()` from our thread
    while its I/O thread waits on the socket: a traceback of "Invalid file descriptor: -1" that
    follows every kind of stop, a refused configuration's included, now and then)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith("Topic %s not found in cluster metadata") and record.args:
            return not str(record.args[0] if isinstance(record.args, tuple) else "").endswith(".epoch")
        if msg.startswith("Unhandled exception in task") and record.exc_info and _closed_socket(record.exc_info[1]):
            return False
        return "blocking the event loop" not in record.getMessage()


def _closed_socket(exc: BaseException | None) -> bool:
    """A socket closed under a pending read, as the selector reports it: ValueError, fd -1."""
    return isinstance(exc, ValueError) and "Invalid file descriptor: -1" in str(exc)


_pid = os.getpid()  # an event line's pid, kept right in a forked child


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class EventLog:
    """Appends one JSON object per line. Thread-safe.

    Block-buffered: a line-buffered write costs a system call per event, three
    per task. The worker flushes on every poll (at least every 100 ms) and
    before a crash exit; everything else is flushed on close.
    """

    def __init__(self, settings: Settings | None, process: str, stream: TextIO | None = None) -> None:
        self.process = process
        self._lock = threading.Lock()
        self._out: TextIO | None = stream  # a stream given (stdout, tests)
        self._file: BinaryIO | None = None
        if stream is None and settings is not None:
            Path(settings.log_dir).mkdir(parents=True, exist_ok=True)
            # Open for the log's lifetime, not a block: close() closes it. In bytes: the line is
            # UTF-8 already, so a text file's decoding and encoding again (per event) are saved.
            self._file = open(Path(settings.log_dir) / f"{process}.events.jsonl", "ab", buffering=1 << 16)  # noqa: SIM115

    def emit(self, event: str, **fields: Any) -> None:
        if self._out is None and self._file is None:
            return
        # Three lines per task: the microseconds as an integer (not round()), the pid as of the last fork,
        # one dict filled in place and orjson's own newline, about a third less CPU per line.
        body = {"ts": time.time_ns() // 1000 / 1e6, "event": event, "process": self.process, "pid": _pid}
        for k, v in fields.items():
            if v is not None:
                body[k] = v
        line = codec.dumps_line(body, default=str)  # ASCII escapes for lone surrogates (codec)
        with self._lock:
            if self._file is not None:
                self._file.write(line)
            elif self._out is not None:
                self._out.write(line.decode("utf-8", "surrogatepass"))

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
            elif self._out is not None:
                self._out.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
            if self._out is not None and self._out not in (sys.stdout, sys.stderr):
                self._out.close()
            self._file = self._out = None

"""How the CLI shows things to a person: times, durations, task records, progress.

Kept apart from `cli.py` so the parser stays a parser; nothing here talks to
Kafka or Redis.
"""

from __future__ import annotations

import difflib
import inspect
import json
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from yadtq.cli.follow import progress_text
from yadtq.store.backend import TaskRecord
from yadtq.store.queue_stats import QueueDepth
from yadtq.task.registry import Registry
from yadtq.task.status import Status


def when(ts: float | None, now: float | None = None) -> str:
    """`2026-11-22 23:10:01 (3m 2s ago)`, or `-`."""
    if not ts:
        return "-"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    ago = now - ts
    return f"{stamp} ({duration(ago)} ago)" if ago >= 0 else f"{stamp} (in {duration(-ago)})"


def duration(seconds: float) -> str:
    """`0.012s`, `4.2s`, `3m 2s`, `5h 1m`, `2d 3h`."""
    if seconds < 1:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def record_line(rec: TaskRecord) -> str:
    """One line per task (what `tasks` lists and `status` starts with)."""
    line = f"{rec.task_id} {rec.task} {rec.status}"
    if rec.status == Status.SUCCESS:
        line += f" result={json.dumps(rec.result)}"
    if rec.error:
        line += f" error={rec.error!r}"
    return line + f" attempts={rec.attempts}" + (f" worker={rec.worker}" if rec.worker else "")


def record_details(rec: TaskRecord, history: Iterable[tuple[float, str]], now: float | None = None) -> list[str]:
    """What `status` shows under the record line: times, durations, attempts, history."""
    now = time.time() if now is None else now
    call = ", ".join([*map(json.dumps, rec.args), *(f"{k}={json.dumps(v)}" for k, v in rec.kwargs.items())])
    lines = [f"  call       {rec.task}({call})"]
    if rec.key:
        lines.append(f"  key        {rec.key}")
    requeued = rec.first_submitted is not None and rec.first_submitted != rec.submitted
    if requeued:  # waits count from the latest publish, not from the first submission
        lines += [f"  submitted  {when(rec.first_submitted, now)}", f"  requeued   {when(rec.submitted, now)}"]
    else:
        lines.append(f"  submitted  {when(rec.submitted, now)}")
    if rec.eta:
        lines.append(f"  not before {when(rec.eta, now)}")
    if rec.expires:
        lines.append(f"  expires    {when(rec.expires, now)}")
    if rec.started:
        waited = f"  (waited {duration(rec.started - rec.submitted)})" if rec.submitted else ""
        lines.append(f"  started    {when(rec.started, now)}{waited}")
    if rec.finished:
        ran = f"ran {duration(rec.finished - rec.started)}" if rec.started else ""
        since = "the requeue" if requeued else "submission"
        total = f"{duration(rec.finished - rec.submitted)} from {since}" if rec.submitted else ""
        lines.append(f"  finished   {when(rec.finished, now)}  ({'; '.join(x for x in (ran, total) if x)})")
    elif rec.started and rec.status == Status.PROCESSING:
        lines.append(f"  running    for {duration(now - rec.started)}")
    if rec.progress is not None:
        lines.append(f"  progress   {progress_text(rec)}")
    tries = f" of {rec.tries}" if rec.tries else ""
    limit = f", time limit {rec.time_limit:g}s" if rec.time_limit else ""
    lines.append(f"  attempts   {rec.attempts}{tries}{limit}" + (f", on worker {rec.worker}" if rec.worker else ""))
    events = sorted(history)
    if events:
        lines.append("  history")
        lines += [f"    {time.strftime('%H:%M:%S', time.localtime(ts))}.{int(ts % 1 * 1000):03d}  {text}"
                  for ts, text in events]
    return lines


def signature_list(registry: Registry) -> str:
    """`add(a, b)  divide(a, b)  ...`: the task names a worker with these modules runs."""
    return "\n".join(f"  {t.name}{_plain_signature(t.fn)}" for t in sorted(registry, key=lambda t: t.name))


def _plain_signature(fn: Any) -> str:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "(...)"
    return "(" + ", ".join(("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name
                           for p in sig.parameters.values()) + ")"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


class Progress:
    """Receives `produce`'s status lines; shows them as one line rewritten in place
    on a terminal, or at most every `every` seconds otherwise (so a long file does
    not print a line per batch), and passes other lines through."""

    def __init__(self, stream: IO[str] | None = None, every: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.started = time.monotonic()
        self._last_shown = 0.0
        self._pending = ""
        self._dirty = False

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith("sent "):
                self._progress(line)
            elif line:
                self.close_line()
                print(line, file=self.stream, flush=True)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def _progress(self, line: str) -> None:
        elapsed = time.monotonic() - self.started
        try:
            count = int(line.split()[1])
            rate = f" ({count / elapsed:,.0f}/s)" if elapsed > 1 else ""
        except (IndexError, ValueError):
            rate = ""
        self._pending = f"{line}{rate}"
        now = time.monotonic()
        if self.tty:
            self.stream.write(f"\r{self._pending}\x1b[K")
            self.stream.flush()
            self._dirty = True
        elif now - self._last_shown >= self.every:
            print(self._pending, file=self.stream, flush=True)
            self._last_shown = now
            self._pending = ""

    def close_line(self) -> None:
        """Ends the progress line (a terminal) or prints the last count not shown yet."""
        if self.tty and self._dirty:
            self.stream.write("\n")
            self._dirty = False
        elif not self.tty and self._pending:
            print(self._pending, file=self.stream, flush=True)
        self._pending = ""


def queues_table(rows: Iterable[QueueDepth]) -> str:
    """`yadtq queues`: one line per queue."""
    lines = [f"{'QUEUE':<20} {'QUEUED':>8} {'LAG':>9} {'DONE/S':>8} {'DEAD':>6}"]
    for r in rows:
        lag = duration(r.lag) if r.lag is not None else "-"
        lines.append(f"{r.queue:<20} {r.queued:>8} {lag:>9} {r.throughput:>8.2f} {r.dead_letters:>6}")
    return "\n".join(lines)

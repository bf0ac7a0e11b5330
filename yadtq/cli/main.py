"""The `yadtq` command: parses flags, builds Settings, calls the library.

Settings come from `YADTQ_*` env vars; the flags here override them.
Exit codes are the named `RET_*` of `yadtq.errors`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Any

from yadtq.cli import processes  # noqa: F401  (registers the process commands)
from yadtq.cli.commands import COMMANDS, command, cwd_importable
from yadtq.cli.parser import build_parser
from yadtq.cli.schedules import cmd_schedules
from yadtq.config import Settings
from yadtq.errors import (
    RET_CONNECT,
    RET_ERROR,
    RET_OK,
    RET_TASK_FAILED,
    RET_TIMEOUT,
    RET_USAGE,
    ConfigError,
    ConnectError,
    ResultTimeout,
    TaskFailed,
    TaskNotFound,
    YADTQError,
)
from yadtq.task.status import STATUSES, Status

# The first matching row names a command's exit code.
EXIT_CODES: tuple[tuple[type[YADTQError], int], ...] = (
    (ConnectError, RET_CONNECT), (ConfigError, RET_USAGE), (TaskFailed, RET_TASK_FAILED),
    (ResultTimeout, RET_TIMEOUT), (TaskNotFound, RET_ERROR), (YADTQError, RET_ERROR),
)


COMMANDS["schedules"] = cmd_schedules


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        kafka_bootstrap=args.kafka, redis_url=args.redis, prefix=args.prefix,
        topic=getattr(args, "topic", None), partitions=getattr(args, "partitions", None),
        log_dir=args.log_dir, heartbeat_interval=getattr(args, "heartbeat_interval", None),
        dead_after=getattr(args, "dead_after", None), tries=getattr(args, "tries", None),
        time_limit=getattr(args, "time_limit", None), concurrency=getattr(args, "concurrency", None),
        queues=getattr(args, "queues", None))


def _value(word: str) -> Any:
    try:
        return json.loads(word)
    except ValueError:
        return word


def _print_record(rec: Any, as_json: bool) -> None:
    from yadtq.cli.display import record_line
    print(json.dumps(rec.as_dict()) if as_json else record_line(rec))


@command
def cmd_produce(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.cli.display import Progress
    from yadtq.client.client import YADTQ
    from yadtq.client.line_producer import produce
    configured = Settings.from_env().topic
    with YADTQ(s) as q:
        if args.topic != configured:
            print(f"yadtq: warning: producing to topic {args.topic!r}, but workers, the monitor and 'yadtq tasks' "
                  f"use {configured!r} (YADTQ_TOPIC) unless started with --topic {args.topic}", file=sys.stderr)
        progress = Progress(sys.stderr if args.ids else sys.stdout)
        sink: Any = _PrintsIds(q) if args.ids else q
        try:
            stats = produce(sink, sys.stdin, out=progress)  # type: ignore[arg-type]
        finally:
            progress.close_line()
    summary = f"done: {stats.sent} sent, {stats.bad} bad line(s) skipped" + (", end sent" if stats.ended else "")
    print(summary, file=sys.stderr if args.ids else sys.stdout)
    return RET_OK


class _PrintsIds:
    """The client as `produce` sees it, printing each task id once the broker has it."""

    def __init__(self, q: Any) -> None:
        self._q = q

    def publish(self, messages: Any, wait: bool = True) -> list[str]:
        ids: list[str] = self._q.publish(messages, wait=wait)
        print("\n".join(m.task_id for m in messages), flush=True)
        return ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._q, name)


# -- client ------------------------------------------------------------------
@command
def cmd_submit(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    from yadtq.errors import SubmissionRefused
    from yadtq.task.modules import load_task_modules
    from yadtq.task.registry import registry
    cwd_importable()
    load_task_modules(args.tasks)
    with YADTQ(s) as q:
        # One rule (README, "Validation at the edge"): against what live workers serve; before any
        # has announced, the names this command knows (built-ins and --tasks modules).
        if not args.unchecked and not q.edge.served() and _unknown_here(args.task, registry):
            return RET_USAGE
        try:
            tid = q.submit(args.task, [_value(a) for a in args.args], tries=args.task_tries,
                           time_limit=args.task_time_limit, key=args.key, unchecked=args.unchecked,
                           countdown=args.countdown, eta=_when(args.eta), expires=_when(args.expires),
                           result_ttl=args.task_result_ttl, queue=args.queue)
        except SubmissionRefused as exc:
            print(f"yadtq: error: {exc}; nothing sent (--unchecked sends it anyway)", file=sys.stderr)
            return RET_USAGE
        if not args.wait:
            print(json.dumps({"task-id": tid}) if args.json else tid)
            return RET_OK
        if not args.json:
            print(tid, flush=True)
        rec = _wait_telling_why(q, tid, args.timeout)
        _print_record(rec, args.json)
        return RET_OK if rec.status == Status.SUCCESS else RET_TASK_FAILED


def _when(text: str | None) -> float | str | None:
    """--eta/--expires: a number (epoch seconds for --eta, seconds from now for --expires) or an ISO-8601 time."""
    try:
        return None if text is None else float(text)
    except ValueError:
        return text


def _wait_telling_why(q: Any, tid: str, timeout: float | None) -> Any:
    """Waits for the task's end; while it has not ended and no worker serves yet (a farm still
    joining its group), says so once on stderr instead of only waiting."""
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if told or (left is not None and left <= 1.0):
            return q.wait(tid, left)
        try:
            return q.wait(tid, 1.0)
        except ResultTimeout:
            pass
        note = q.waiting_note()
        if note:
            print(f"yadtq: waiting: {note}", file=sys.stderr, flush=True)
            told = True
        elif q.status(tid).status != Status.QUEUED:
            told = True  # it started: the rest is its own run time


def _unknown_here(task: str, registry: Any) -> bool:
    """Before any worker has announced: refuses a near-miss of a known name, notes any other unknown one."""
    from yadtq.cli.display import did_you_mean
    if task in registry:
        return False
    guess = did_you_mean(task, registry.names())
    if guess:
        print(f"yadtq: error: unknown task {task!r}; did you mean {guess!r}? "
              f"(known: {', '.join(registry.names())}; --unchecked sends it anyway)", file=sys.stderr)
        return True
    print(f"yadtq: note: {task!r} is not a built-in task: a worker must load the module that "
          "defines it (yadtq worker --tasks MODULE), or the task fails as unknown", file=sys.stderr)
    return False


@command
def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.cli.display import record_details
    from yadtq.client.client import YADTQ
    if args.follow:
        return _follow(args, s)
    with YADTQ(s, create_topic=False) as q:
        rec = q.status(args.task_id)
        history = q.backend.events(args.task_id)
    if args.json:
        print(json.dumps({**rec.as_dict(), "history": [{"ts": ts, "event": text} for ts, text in history]}))
        return RET_OK
    _print_record(rec, False)
    print("\n".join(record_details(rec, history)))
    return RET_OK


def _follow(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.cli.follow import follow_line
    from yadtq.client.client import YADTQ
    status = ""
    with YADTQ(s, create_topic=False) as q:
        for rec in q.follow(args.task_id):
            print(follow_line(rec, args.json), flush=True)
            status = rec.status
    return RET_OK if status == Status.SUCCESS else RET_TASK_FAILED


@command
def cmd_workflow(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.cli.workflow_view import workflow_lines
    from yadtq.client.client import YADTQ
    with YADTQ(s, create_topic=False) as q:
        wf = q.workflow(args.workflow_id)
    print(json.dumps(wf.as_dict()) if args.json else "\n".join(workflow_lines(wf)))
    return RET_OK


@command
def cmd_result(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    with YADTQ(s, create_topic=False) as q:
        print(json.dumps(q.result(args.task_id, args.timeout)))
    return RET_OK


@command
def cmd_tasks(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    if args.limit < 0:
        print("yadtq: error: --limit must be 0 (counts only) or more", file=sys.stderr)
        return RET_USAGE
    with YADTQ(s, create_topic=False) as q:
        counts = q.backend.counts()
        statuses = [args.status] if args.status else list(STATUSES)
        listed = {st: (q.backend.list(st, args.limit) if args.limit else []) for st in statuses}
    if args.json:
        print(json.dumps({"counts": counts, "tasks": {st: [r.as_dict() for r in recs] for st, recs in listed.items()}}))
        return RET_OK
    print("  ".join(f"{k}={v}" for k, v in counts.items()))
    for recs in listed.values():
        for rec in recs:
            _print_record(rec, False)
    return RET_OK


@command
def cmd_requeue(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    if not args.task_ids and args.stale is None:
        print("yadtq: error: give task ids, or --stale SECONDS", file=sys.stderr)
        return RET_USAGE
    with YADTQ(s) as q:
        ids = [q.requeue(tid) for tid in args.task_ids]
        if args.stale is not None:
            ids += q.requeue_stale(args.stale)
    for tid in ids:
        print(tid)
    print(f"requeued {len(ids)} task(s)", file=sys.stderr)
    return RET_OK


@command
def cmd_dlq(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    if args.action == "list" and args.task_ids:
        print("yadtq: error: dlq list takes no ids (did you mean: yadtq dlq requeue ID...?)", file=sys.stderr)
        return RET_USAGE
    with YADTQ(s) as q:
        if args.action == "requeue":
            if not args.task_ids:
                print("yadtq: error: dlq requeue needs task ids (see: yadtq dlq list)", file=sys.stderr)
                return RET_USAGE
            for tid in args.task_ids:
                print(q.requeue(tid))
            return RET_OK
        letters = q.live.dead_letters(args.limit, args.queue)
    if args.json:
        print(json.dumps(letters))
        return RET_OK
    for e in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
        print(f"{when} {e.get('task_id') or '(no id)'} {e.get('task') or '-'} "
              f"p{e['partition']}@{e['offset']}: {e['error']}")
    if not letters:
        print("the dead-letter queue is empty")
    return RET_OK


@command
def cmd_queues(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.cli.display import queues_table
    from yadtq.client.client import YADTQ
    with YADTQ(s, create_topic=False) as q:
        rows = q.queues(args.window)
    print(json.dumps([r.as_dict() for r in rows]) if args.json else queues_table(rows))
    return RET_OK


@command
def cmd_workers(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.cli.display import duration
    from yadtq.client.client import YADTQ
    with YADTQ(s, create_topic=False) as q:
        workers = q.live.workers()
        done, failed = q.live.completions()
        failures = q.live.failures(args.limit)
    if args.json:
        print(json.dumps({"workers": workers, "failures": failures}))
        return RET_OK
    now = time.time()
    for name, w in sorted(workers.items()):
        print(f"{name:20} {w['status']:5} {w.get('state', ''):8} "
              f"last heartbeat {duration(max(0.0, now - w['last_heartbeat']))} ago"
              f"  done={done.get(name, 0)} failed={failed.get(name, 0)} partitions={w.get('partitions')}"
              f"  task={w.get('current_task') or '-'}")
    if not workers:
        print("no workers have sent a heartbeat (is the monitor running?)")
    for f in failures:
        print(_failure_line(f))
    return RET_OK


def _failure_line(f: dict[str, Any]) -> str:
    def hms(ts: Any) -> str:
        return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"
    held = ", ".join(f.get("tasks") or []) or "-"
    where = f" pid {f.get('pid')} on {f.get('host')}" if f.get("pid") else ""
    if f.get("source") == "farm":
        return f"CRASH {f['worker']} at {hms(f.get('declared_at'))}{where}: {f.get('reason', '?')}; tasks held: {held}"
    return (f"DEAD {f['worker']} declared {hms(f.get('declared_at'))} last heartbeat {hms(f.get('last_heartbeat'))}"
            f"{where} tasks held: {held}")


@command
def cmd_export(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    from yadtq.extras import needs_extra
    with needs_extra("export", f"yadtq export --format {args.format}"):
        from yadtq.store.export import export
        if args.format == "parquet":  # pandas' own error for a missing engine names no extra
            importlib.import_module("pyarrow")
    if args.limit is not None and args.limit < 1:
        print("yadtq: error: --limit must be at least 1", file=sys.stderr)
        return RET_USAGE
    with YADTQ(s, create_topic=False) as q:
        stats = export(q.backend, q.live, args.out, limit=args.limit, fmt=args.format)
    print(stats.summary())
    return RET_OK


@command
def cmd_limits(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.cli import limits
    return limits.run(args, s)


from yadtq.cli.control import COMMANDS as CONTROL_COMMANDS  # noqa: E402  (cancel, purge, pause, inspect...)

COMMANDS.update(CONTROL_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `yadtq tasks | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return RET_OK


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        s = settings_from(args)
        return COMMANDS[args.command](args, s)
    except YADTQError as exc:
        code = next(c for kind, c in EXIT_CODES if isinstance(exc, kind))
        label = "error: " if code in (RET_CONNECT, RET_USAGE, RET_ERROR) else ""
        print(f"yadtq: {label}{exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return RET_OK


if __name__ == "__main__":
    sys.exit(main())

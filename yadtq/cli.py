"""The `yadtq` command: parses flags, builds Settings, calls the library.

Settings come from `YADTQ_*` env vars; the flags here override them.
Exit codes are the named `RET_*` of `yadtq.errors`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

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
from yadtq.keys import STATUSES
from yadtq.logs import setup_logging

COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {}
# The first matching row names a command's exit code.
EXIT_CODES: tuple[tuple[type[YADTQError], int], ...] = (
    (ConnectError, RET_CONNECT), (ConfigError, RET_USAGE), (TaskFailed, RET_TASK_FAILED),
    (ResultTimeout, RET_TIMEOUT), (TaskNotFound, RET_ERROR), (YADTQError, RET_ERROR),
)


def command(fn: Callable[[argparse.Namespace, Settings], int]) -> Callable[[argparse.Namespace, Settings], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        kafka_bootstrap=args.kafka, redis_url=args.redis, prefix=args.prefix,
        topic=getattr(args, "topic", None), partitions=getattr(args, "partitions", None),
        log_dir=args.log_dir, heartbeat_interval=getattr(args, "heartbeat_interval", None),
        dead_after=getattr(args, "dead_after", None), tries=getattr(args, "tries", None),
        time_limit=getattr(args, "time_limit", None), concurrency=getattr(args, "concurrency", None))


def _value(word: str) -> Any:
    try:
        return json.loads(word)
    except ValueError:
        return word


def _print_record(rec: Any, as_json: bool) -> None:
    d = rec.as_dict()
    if as_json:
        print(json.dumps(d))
        return
    line = f"{rec.task_id} {rec.task} {rec.status}"
    if rec.status == "success":
        line += f" result={json.dumps(rec.result)}"
    if rec.error:
        line += f" error={rec.error!r}"
    print(line + f" attempts={rec.attempts}" + (f" worker={rec.worker}" if rec.worker else ""))


# -- processes ---------------------------------------------------------------
@command
def cmd_services(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.services import Services
    setup_logging(s, "services")
    s = s.replace(broker=args.broker)
    services = Services(s, nodes=args.nodes)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        services.start(say=lambda line: print(line, flush=True))
        if not services.started:
            print("nothing to start; exiting", flush=True)
            return RET_OK
        print("services up; Ctrl+C stops what was started here", flush=True)
        name = services.wait()
        print(f"{name} exited unexpectedly", file=sys.stderr)
        return RET_ERROR
    except KeyboardInterrupt:
        return RET_OK
    finally:
        services.stop()


@command
def cmd_wait(args: argparse.Namespace, s: Settings) -> int:
    """Used by the Procfile: processes start once the broker and Redis answer."""
    from yadtq.services import answers, broker_address, redis_address
    deadline = time.monotonic() + args.timeout
    for what, (host, port) in (("Kafka broker", broker_address(s)), ("Redis", redis_address(s))):
        while not answers(host, port):
            if time.monotonic() > deadline:
                print(f"yadtq: error: {what} at {host}:{port} did not answer within {args.timeout:g}s",
                      file=sys.stderr)
                return RET_CONNECT
            time.sleep(0.2)
    return RET_OK


@command
def cmd_worker(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.tasks import load_task_modules, registry
    from yadtq.worker import Worker
    name = args.name or f"{socket.gethostname()}-{__import__('os').getpid()}"
    setup_logging(s, f"worker-{name}", args.verbose)
    load_task_modules(args.tasks)
    middleware = []
    if args.crash:
        from yadtq.crash import CrashInjector
        middleware.append(CrashInjector.parse(args.crash, seed=args.seed))
    worker = Worker(s, registry, name, standby=args.standby, middleware=middleware)
    worker.connect()
    worker.install_signal_handlers()
    logging.getLogger("yadtq").info("worker %s serving %s (tasks: %s)", name, s.topic, ", ".join(registry.names()))
    worker.run()
    return RET_OK


@command
def cmd_monitor(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.monitor import Monitor
    setup_logging(s, "monitor", args.verbose)
    monitor = Monitor(s)
    monitor.connect()
    monitor.install_signal_handlers()
    logging.getLogger("yadtq").info("monitor watching %s (dead after %gs)", s.heartbeat_topic, s.dead_after)
    monitor.run()
    return RET_OK


@command
def cmd_produce(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client import YADTQ
    from yadtq.producer import produce
    with YADTQ(s) as q:
        stats = produce(q, sys.stdin)
    print(f"done: {stats.sent} sent, {stats.bad} bad line(s) skipped" + (", end sent" if stats.ended else ""))
    return RET_OK


# -- client ------------------------------------------------------------------
@command
def cmd_submit(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client import YADTQ
    with YADTQ(s) as q:
        tid = q.submit(args.task, [_value(a) for a in args.args], tries=args.task_tries,
                       time_limit=args.task_time_limit)
        if not args.wait:
            print(json.dumps({"task-id": tid}) if args.json else tid)
            return RET_OK
        if not args.json:
            print(tid, flush=True)
        rec = q.wait(tid, args.timeout)
        _print_record(rec, args.json)
        return RET_OK if rec.status == "success" else RET_TASK_FAILED


@command
def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client import YADTQ
    with YADTQ(s) as q:
        _print_record(q.status(args.task_id), args.json)
    return RET_OK


@command
def cmd_result(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client import YADTQ
    with YADTQ(s) as q:
        print(json.dumps(q.result(args.task_id, args.timeout)))
    return RET_OK


@command
def cmd_tasks(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client import YADTQ
    with YADTQ(s) as q:
        counts = q.backend.counts()
        statuses = [args.status] if args.status else list(STATUSES)
        if args.json:
            print(json.dumps({"counts": counts, "tasks": {st: [r.as_dict() for r in q.backend.list(st, args.limit)]
                                                          for st in statuses}}))
            return RET_OK
        print("  ".join(f"{k}={v}" for k, v in counts.items()))
        for st in statuses:
            for rec in q.backend.list(st, args.limit):
                _print_record(rec, False)
    return RET_OK


@command
def cmd_requeue(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client import YADTQ
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
    from yadtq.client import YADTQ
    with YADTQ(s) as q:
        if args.action == "requeue":
            if not args.task_ids:
                print("yadtq: error: dlq requeue needs task ids", file=sys.stderr)
                return RET_USAGE
            for tid in args.task_ids:
                print(q.requeue(tid))
            return RET_OK
        letters = q.live.dead_letters(args.limit)
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
def cmd_workers(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client import YADTQ
    with YADTQ(s) as q:
        workers = q.live.workers()
        done, failed = q.live.completions()
        if args.json:
            print(json.dumps({"workers": workers, "failures": q.live.failures(args.limit)}))
            return RET_OK
        now = time.time()
        for name, w in sorted(workers.items()):
            print(f"{name:20} {w['status']:5} {w.get('state', ''):8} last heartbeat {now - w['last_heartbeat']:5.1f}s ago"
                  f"  done={done.get(name, 0)} failed={failed.get(name, 0)} partitions={w.get('partitions')}"
                  f"  task={w.get('current_task') or '-'}")
        if not workers:
            print("no workers have sent a heartbeat (is the monitor running?)")
        for f in q.live.failures(args.limit):
            print(f"DEAD {f['worker']} declared {time.strftime('%H:%M:%S', time.localtime(f['declared_at']))}"
                  f" last heartbeat {time.strftime('%H:%M:%S', time.localtime(f['last_heartbeat']))}"
                  f" tasks held: {', '.join(f['tasks']) or '-'}")
    return RET_OK


@command
def cmd_export(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client import YADTQ
    from yadtq.export import export
    if args.limit is not None and args.limit < 1:
        print("yadtq: error: --limit must be at least 1", file=sys.stderr)
        return RET_USAGE
    with YADTQ(s, create_topic=False) as q:
        stats = export(q.backend, q.live, args.out, limit=args.limit, fmt=args.format)
    print(stats.summary())
    return RET_OK


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection (flags override YADTQ_* env vars)")
    g.add_argument("--kafka", metavar="HOST:PORT", help="Kafka bootstrap servers (YADTQ_KAFKA_BOOTSTRAP)")
    g.add_argument("--redis", metavar="URL", help="Redis URL (YADTQ_REDIS_URL)")
    g.add_argument("--prefix", help="Redis key prefix (YADTQ_PREFIX)")
    g.add_argument("--log-dir", help="log directory (YADTQ_LOG_DIR)")
    g.add_argument("-v", "--verbose", action="store_true")

    topic = argparse.ArgumentParser(add_help=False)
    topic.add_argument("--topic", help="tasks topic (YADTQ_TOPIC)")
    topic.add_argument("--partitions", type=int, help="partitions when creating the topic (YADTQ_PARTITIONS)")

    parser = argparse.ArgumentParser(prog="yadtq", description="YADTQ: a distributed task queue on Kafka and Redis.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("services", parents=[common, topic], help="start the embedded broker and Redis if none answers")
    p.add_argument("--broker", choices=["embedded", "kafka"], help="broker to start: the embedded one, or Apache "
                   "Kafka fetched once with Maven (YADTQ_BROKER)")
    p.add_argument("--nodes", type=int, default=1, help="Apache Kafka nodes for --broker kafka (default 1)")

    p = sub.add_parser("wait", parents=[common], help="wait until the broker and Redis answer")
    p.add_argument("--timeout", type=float, default=30.0)

    p = sub.add_parser("worker", parents=[common, topic], help="run a worker in consumer group 'workers'")
    p.add_argument("--name", help="worker name, unique in the farm (default host-pid)")
    p.add_argument("--tasks", action="append", default=[], metavar="MODULE", help="import MODULE's @task functions (repeatable)")
    p.add_argument("--standby", action="store_true", help="own no partitions until a failure orphans some")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="tasks run at once in this process: threads, or one event loop for async def tasks "
                        "(YADTQ_CONCURRENCY, default 8), e.g. --concurrency 16")
    p.add_argument("--tries", type=int, help="default attempts per task (YADTQ_TRIES)")
    p.add_argument("--time-limit", type=float, help="default time limit per task, seconds, 0 = none (YADTQ_TIME_LIMIT)")
    p.add_argument("--crash", metavar="SPEC", help="crash injection: after:3-5 | after:N | prob:P, optionally "
                   "@before-claim | @during (default) | @after-complete, e.g. after:3-5@after-complete")
    p.add_argument("--seed", type=int, help="seed for --crash")
    p.add_argument("--heartbeat-interval", type=float, help="seconds (YADTQ_HEARTBEAT_INTERVAL)")

    p = sub.add_parser("monitor", parents=[common, topic], help="watch heartbeats, declare workers ALIVE/DEAD")
    p.add_argument("--dead-after", type=float, help="seconds without heartbeat before DEAD (YADTQ_DEAD_AFTER)")

    p = sub.add_parser("produce", parents=[common], help="read tasks from stdin, one per line; 'end' stops the run")
    p.add_argument("topic", help="tasks topic")
    p.add_argument("partitions", type=int, help="partitions (the topic is created with this many if missing)")

    p = sub.add_parser("submit", parents=[common, topic], help="submit one task, print its id")
    p.add_argument("task")
    p.add_argument("args", nargs="*", help="arguments, each read as JSON (else as a string)")
    p.add_argument("--wait", action="store_true", help="wait for the outcome and print it")
    p.add_argument("--timeout", type=float, default=None, help="with --wait: give up after S seconds")
    p.add_argument("--json", action="store_true")
    p.add_argument("--tries", dest="task_tries", type=int, help="attempts for this task")
    p.add_argument("--time-limit", dest="task_time_limit", type=float, help="time limit for this task")

    p = sub.add_parser("status", parents=[common], help="a task's record")
    p.add_argument("task_id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("result", parents=[common], help="wait for a task's result")
    p.add_argument("task_id")
    p.add_argument("--timeout", type=float, default=None)

    p = sub.add_parser("tasks", parents=[common], help="counts and lists of tasks by status")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("requeue", parents=[common, topic], help="run failed tasks again, or republish stale queued ones")
    p.add_argument("task_ids", nargs="*", metavar="ID")
    p.add_argument("--stale", type=float, metavar="SECONDS", help="republish tasks queued for longer than this")

    p = sub.add_parser("dlq", parents=[common, topic], help="the dead-letter queue: list, or requeue by task id")
    p.add_argument("action", choices=["list", "requeue"])
    p.add_argument("task_ids", nargs="*", metavar="ID")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("workers", parents=[common], help="the worker registry and failure history")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("export", parents=[common], help="write task records, heartbeats, failures, series to files")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (created)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N task records per status (default all)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format (parquet needs pyarrow)")
    return parser


def main(argv: list[str] | None = None) -> int:
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

"""`python -m worker_farm --workers N [--standby K] [--crash SPEC] [--seed S] ...`

Settings are built as for every `yadtq` command (`YADTQ_*` variables, then
the flags) and handed to each child as `YADTQ_*` variables.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys

from worker_farm.spec import WorkerSpec
from worker_farm.supervisor import Farm
from yadtq.cli.main import settings_from
from yadtq.errors import RET_CONNECT, RET_USAGE, ConfigError, ConnectError
from yadtq.logs import EventLog


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m worker_farm", description="Spawn and supervise YADTQ workers.")
    p.add_argument("--workers", type=int, default=2, help="workers that run tasks (default 2)")
    p.add_argument("--standby", type=int, default=0,
                   help="standby workers: never crash, own partitions only after a failure (default 0)")
    p.add_argument("--tasks", action="append", default=[], metavar="MODULE",
                   help="task module every worker imports (repeatable, or comma-separated; the current folder "
                        "is searched), e.g. --tasks mypkg.mytasks")
    p.add_argument("--crash", metavar="SPEC",
                   help="crash injection for the non-standby workers: after:3-5 | after:N | prob:P, "
                        "optionally @before-claim | @during (default) | @after-complete")
    p.add_argument("--seed", type=int, help="seed for the crash points (each worker gets its own, derived from it)")
    p.add_argument("--respawn", action=argparse.BooleanOptionalAction, default=True,
                   help="respawn crashed workers, with exponential backoff (default on)")
    p.add_argument("--name-prefix", default="W", metavar="P", help="workers are P1..PN (default W); standbys S1..SK")
    p.add_argument("--service-wait", type=float, metavar="SECONDS",
                   help="start the workers at once; each waits up to SECONDS for the broker and Redis to serve "
                        "(YADTQ_SERVICE_WAIT; `make run` uses 60 while the services come up); default: check them "
                        "first and stop if either does not answer")
    g = p.add_argument_group("connection and worker settings (flags override YADTQ_* env vars)")
    g.add_argument("--kafka", metavar="HOST:PORT", help="Kafka bootstrap servers (YADTQ_KAFKA_BOOTSTRAP)")
    g.add_argument("--redis", metavar="URL", help="Redis URL (YADTQ_REDIS_URL)")
    g.add_argument("--prefix", help="Redis key prefix (YADTQ_PREFIX)")
    g.add_argument("--log-dir", help="log directory (YADTQ_LOG_DIR)")
    g.add_argument("--topic", help="tasks topic (YADTQ_TOPIC)")
    g.add_argument("--partitions", type=int, help="partitions when creating the topic (YADTQ_PARTITIONS)")
    g.add_argument("--tries", type=int, help="default attempts per task (YADTQ_TRIES)")
    g.add_argument("--time-limit", type=float, help="default time limit per task, seconds (YADTQ_TIME_LIMIT)")
    g.add_argument("--heartbeat-interval", type=float, help="seconds (YADTQ_HEARTBEAT_INTERVAL)")
    g.add_argument("--queues", metavar="LIST", help="named queues every worker serves, e.g. high,default,low "
                   "or high:5,default:3,low:1 (YADTQ_QUEUES)")
    return p


def specs_from(args: argparse.Namespace, seed: int | None) -> list[WorkerSpec]:
    """N workers (with the crash spec, each its own seed drawn from `seed`) and K standbys (never crash)."""
    if args.workers < 0 or args.standby < 0 or args.workers + args.standby == 0:
        raise ConfigError("want --workers/--standby >= 0 and at least one worker")
    seeds = random.Random(seed)
    args.tasks = [m.strip() for value in args.tasks for m in value.split(",") if m.strip()]
    specs = [WorkerSpec(f"{args.name_prefix}{i}", crash=args.crash, tasks=tuple(args.tasks),
                        seed=seeds.randrange(1 << 30) if args.crash else None)
             for i in range(1, args.workers + 1)]
    return specs + [WorkerSpec(f"S{i}", standby=True, tasks=tuple(args.tasks)) for i in range(1, args.standby + 1)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seed = args.seed
    try:
        settings = settings_from(args)
        if args.crash:
            from yadtq.worker.crash import CrashInjector
            CrashInjector.parse(args.crash)  # a bad spec fails here, once, not in every child
            if seed is None:
                seed = random.randrange(1 << 30)  # printed below, so any run can be repeated
        specs = specs_from(args, seed)
        settings = settings.replace(service_wait=args.service_wait)
        if not settings.service_wait:
            # Imported here: with --service-wait the farm starts its workers without them.
            from yadtq.broker.clients import check_reachable
            from yadtq.store.connection import connect_redis
            check_reachable(settings)
            connect_redis(settings).close()
    except ConnectError as exc:
        print(f"worker_farm: error: {exc}", file=sys.stderr)
        return RET_CONNECT
    except ConfigError as exc:
        print(f"worker_farm: error: {exc}", file=sys.stderr)
        return RET_USAGE
    farm = Farm(settings, specs, respawn=args.respawn, events=EventLog(settings, "farm"))
    # Children run in their own sessions: a terminal's Ctrl+C reaches only the
    # farm, which stops them in order. A second Ctrl+C kills them at once.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: farm.stop())
    farm.say(f"[farm] {args.workers} worker(s), {args.standby} standby; respawn {'on' if args.respawn else 'off'}"
             + (f"; crash {args.crash} seed {seed}" if args.crash else "")
             + f"; topic {settings.topic}, group {settings.group}"
             + (f", queues {settings.queues}" if settings.queues else ""))
    return farm.run()


if __name__ == "__main__":
    sys.exit(main())

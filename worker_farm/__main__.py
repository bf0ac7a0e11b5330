"""`python -m worker_farm --workers N [--standby K] [--crash SPEC] ...`"""

from __future__ import annotations

import argparse
import random
import signal
import sys

from worker_farm.supervisor import Farm, WorkerSpec
from yadtq.backend import connect_redis
from yadtq.broker import check_reachable
from yadtq.config import Settings
from yadtq.errors import RET_CONNECT, RET_USAGE, ConfigError, ConnectError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m worker_farm", description="Spawn and supervise YADTQ workers.")
    p.add_argument("--workers", type=int, default=2, help="workers that run tasks (default 2)")
    p.add_argument("--standby", type=int, default=0, help="standby workers: never crash, own partitions only after a failure")
    p.add_argument("--tasks", action="append", default=[], metavar="MODULE", help="task module for every worker (repeatable)")
    p.add_argument("--crash", help="crash injection for the non-standby workers: after:3-5, prob:0.02, optionally @before-claim|@during|@after-complete")
    p.add_argument("--respawn", action=argparse.BooleanOptionalAction, default=True, help="respawn crashed workers (default on)")
    p.add_argument("--seed", type=int, help="makes crash points reproducible")
    p.add_argument("--name-prefix", default="W", help="worker names are PREFIX1..N; standbys S1..K")
    p.add_argument("--kafka", help="Kafka bootstrap servers (YADTQ_KAFKA_BOOTSTRAP)")
    p.add_argument("--redis", help="Redis URL (YADTQ_REDIS_URL)")
    p.add_argument("--topic", help="tasks topic (YADTQ_TOPIC)")
    p.add_argument("--prefix", help="Redis key prefix (YADTQ_PREFIX)")
    return p


def specs_from(args: argparse.Namespace) -> list[WorkerSpec]:
    if args.workers < 0 or args.standby < 0 or args.workers + args.standby == 0:
        raise ConfigError("want at least one worker")
    seeds = random.Random(args.seed)
    specs = [WorkerSpec(f"{args.name_prefix}{i}", crash=args.crash, tasks=tuple(args.tasks),
                        seed=seeds.randrange(1 << 30) if args.seed is not None else None)
             for i in range(1, args.workers + 1)]
    specs += [WorkerSpec(f"S{i}", standby=True, tasks=tuple(args.tasks)) for i in range(1, args.standby + 1)]
    return specs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(kafka_bootstrap=args.kafka, redis_url=args.redis, topic=args.topic,
                                     prefix=args.prefix)
        specs = specs_from(args)
        if args.crash:
            from yadtq.crash import CrashInjector
            CrashInjector.parse(args.crash)  # a bad spec fails here, not in every child
        check_reachable(settings)
        connect_redis(settings).close()
    except ConnectError as exc:
        print(f"worker_farm: error: {exc}", file=sys.stderr)
        return RET_CONNECT
    except ConfigError as exc:
        print(f"worker_farm: error: {exc}", file=sys.stderr)
        return RET_USAGE
    farm = Farm(settings, specs, respawn=args.respawn)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: farm.stop())
    return farm.run()


if __name__ == "__main__":
    sys.exit(main())

"""The CLI's long-running commands: `run` (the Procfile), `services`, `wait`, `worker`, `monitor`
and `api`. Each sets up logging for its process and runs until stopped."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from yadtq.cli.commands import command, cwd_importable
from yadtq.config import Settings
from yadtq.errors import RET_CONNECT, RET_ERROR, RET_OK, RET_USAGE
from yadtq.logs import setup_logging

if TYPE_CHECKING:
    from yadtq.store.connection import RedisClient
    from yadtq.store.keys import Keys
    from yadtq.store.name_wait import NameWait
    from yadtq.store.worker_names import NameHolder


@command
def cmd_run(args: argparse.Namespace, s: Settings) -> int:
    """What `make run` runs: the Procfile's processes, stopped in order (see yadtq/stack.py)."""
    from yadtq.ops.procfile import Stack, install_signal_handlers, read_procfile
    from yadtq.task.queues import parse_queues
    procfile = Path(args.procfile).resolve()
    entries = read_procfile(procfile)
    env = dict(os.environ)
    # The Procfile's `yadtq` and `python` are this installation's, with or without an activated venv.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    if args.queues:  # every worker the Procfile starts (the farm's) serves these queues
        env["YADTQ_QUEUES"] = parse_queues(args.queues).describe()
    from yadtq.ops.service_wait import wait_for_a_worker, wait_for_services
    stack_settings = Settings.from_env(env)

    def gate(stop: threading.Event) -> str | None:
        # The `yadtq wait && ` lines (dashboard, API) start once the services serve and the farm's first
        # worker is about to join (at most 10 s later): the workers start first.
        why = wait_for_services(stack_settings, 60.0, stop=stop, say=lambda line: stack.say("run", f"waiting: {line}"))
        return why if why is not None else wait_for_a_worker(stack_settings, 10.0, stop)

    stack = Stack(entries, env=env, cwd=procfile.parent, grace=args.grace, gate=gate)
    install_signal_handlers(stack)
    return stack.run()


@command
def cmd_services(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.ops.services import RedisHAStarter, Services
    setup_logging(s, "services")
    s = s.replace(broker=args.broker)
    ha: RedisHAStarter | None = None
    if args.redis_ha:  # only then: it brings the Redis client, which `make run` waits on here otherwise
        from yadtq.ops.redis_ha import start_redis_ha
        ha = start_redis_ha
    elif args.redis_cluster:  # the same: a cluster of primaries instead of one Redis
        from yadtq.ops.redis_cluster import start_redis_cluster
        ha = functools.partial(start_redis_cluster, primaries=args.redis_cluster)
    services = Services(s, nodes=args.nodes, redis_ha=ha)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        services.start(say=lambda line: print(line, flush=True))
        if not services.owns_any:
            if not args.stay:
                print("nothing to start; exiting", flush=True)
                return RET_OK
            # Under a process manager an exit would read as "the stack is over".
            print("nothing to start: using the services above; staying up until stopped", flush=True)
            while True:
                time.sleep(3600)
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
    """Used by the Procfile: processes start once the broker and Redis serve (Redis done loading its data)."""
    from yadtq.ops.service_wait import wait_for_services
    why = wait_for_services(s, args.timeout, say=lambda line: print(f"yadtq wait: {line}", file=sys.stderr, flush=True))
    if why is not None:
        print(f"yadtq: error: {why}", file=sys.stderr)
        return RET_CONNECT
    return RET_OK


def _services_served(s: Settings) -> bool:
    """With `service_wait` (a process started beside the services, as under `make run`, its imports
    done meanwhile): waits for the broker and Redis; False, said on stderr, when they never served."""
    if not s.service_wait:
        return True
    from yadtq.ops.service_wait import wait_for_services
    why = wait_for_services(s, s.service_wait, say=lambda line: print(f"yadtq: waiting: {line}", file=sys.stderr,
                                                                       flush=True))
    if why is not None:
        print(f"yadtq: error: {why}", file=sys.stderr)
    return why is None


def _await_name(client: RedisClient, keys: Keys, name: str, incarnation: str, ttl: float) -> NameWait:
    """Claims the worker's name, waiting for the lease of a holder in another container or boot;
    SIGINT/SIGTERM meanwhile end the wait (the worker's own handlers come later)."""
    from yadtq.store.name_wait import await_worker_name
    stop = threading.Event()

    def say(holder: NameHolder, left: float) -> None:
        logging.getLogger("yadtq").warning(
            "worker name %s is held by %s, in another container or boot where it cannot be seen whether it "
            "runs: waiting %.1fs for its lease to end, then taking it (giving up after %.1fs if the lease "
            "keeps being renewed)",
            name, holder.describe(), left, max(left, ttl))

    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        waited = await_worker_name(client, keys, name, incarnation, ttl, stop, say)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if waited.stopped:
        logging.getLogger("yadtq").info("stopped while waiting for worker name %s", name)
    return waited


@command
def cmd_worker(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.store.connection import connect_redis
    from yadtq.store.keyspace import base_keys
    from yadtq.store.served import announce, withdraw
    from yadtq.store.worker_names import NameLease, name_ttl
    from yadtq.task.modules import load_task_modules
    from yadtq.task.queues import parse_queues
    from yadtq.task.registry import registry
    from yadtq.task.signatures import specs_of
    from yadtq.worker import Worker
    from yadtq.worker.process_gc import tune_worker_gc
    parse_queues(s.queues)  # a bad --queues is a usage error before anything starts
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    setup_logging(s, f"worker-{name}", args.verbose)
    cwd_importable()
    load_task_modules(args.tasks)
    middleware = []
    if args.crash:
        from yadtq.worker.crash import CrashInjector
        middleware.append(CrashInjector.parse(args.crash, seed=args.seed))
    if not _services_served(s):
        return RET_CONNECT
    # The name is claimed before anything (event log included) is opened under it.
    incarnation = f"{name}:{uuid.uuid4().hex[:12]}"
    client, keys, ttl = connect_redis(s), base_keys(s), name_ttl(s)
    waited = _await_name(client, keys, name, incarnation, ttl)
    if not waited.claimed:
        client.close()
        if waited.stopped:
            return RET_OK
        holder = waited.holder
        who = f" ({holder.describe()}, since {time.strftime('%H:%M:%S', time.localtime(holder.since))})" \
            if holder else ""
        print(f"yadtq: error: worker name {name!r} is taken by a live worker{who}; "
              f"choose another --name, or stop that worker", file=sys.stderr)
        return RET_USAGE
    worker = Worker(s, registry, name, standby=args.standby, middleware=middleware)
    announce(client, keys, name, incarnation, specs_of(registry))  # what clients check submissions against

    def lost(holder: NameHolder | None) -> None:
        logging.getLogger("yadtq").error("worker name %s was taken over by %s; stopping", name,
                                         holder.describe() if holder else "another worker")
        worker.stop()

    lease = NameLease(client, keys, name, incarnation, ttl, on_lost=lost)
    try:
        worker.connect()
        lease.start()
        worker.install_signal_handlers()
        logging.getLogger("yadtq").info("worker %s serving %s (queues %s; tasks: %s)", name, s.topic,
                                        parse_queues(s.queues).describe(), ", ".join(registry.names()))
        tune_worker_gc()
        worker.run()
    finally:
        def goodbye() -> None:
            withdraw(client, keys, name, incarnation)
            lease.release()
        _say_goodbye(goodbye, min(s.connect_timeout, GOODBYE_WAIT))
        client.close()
    return RET_OK


# At most this long for a worker's last Redis writes after `worker_left` (a few round trips when Redis serves).
GOODBYE_WAIT = 2.0


def _say_goodbye(goodbye: Callable[[], None], timeout: float) -> None:
    """The worker left: its last Redis writes (withdraw its tasks, free its name) get `timeout`, then
    the process goes on to exit. This client has no socket timeout and redis-py's retries, so with
    Redis stopped or stalled at the same moment they held the process for ever. Both are only
    courtesies: the name lease frees itself (a restart on this host takes it over at once), and the
    announcement stops counting with it."""
    done = threading.Thread(target=goodbye, name="yadtq-goodbye", daemon=True)
    done.start()
    done.join(timeout)
    if done.is_alive():
        logging.getLogger("yadtq").warning(
            "Redis did not answer within %gs: exiting without freeing the worker name (it frees itself "
            "when its lease ends)", timeout)


@command
def cmd_monitor(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.monitor.monitor import Monitor
    setup_logging(s, "monitor", args.verbose)
    if not _services_served(s):
        return RET_CONNECT
    monitor = Monitor(s)
    monitor.connect()
    monitor.install_signal_handlers()
    logging.getLogger("yadtq").info("monitor watching %s (dead after %gs)", s.heartbeat_topic, s.dead_after)
    monitor.run()
    return RET_OK


@command
def cmd_api(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.extras import needs_extra
    with needs_extra("api", "yadtq api"):
        from yadtq.api import serve
    setup_logging(s, "api", args.verbose)
    serve(s.replace(api_address=args.address), say=lambda line: print(line, flush=True))
    return RET_OK

"""The CLI's control commands: cancel tasks, purge finished ones, pause/resume/stop a worker,
and inspect what each worker runs now.

They do what the HTTP API and the dashboard already do, through the same library calls
(`YADTQ.cancel`, `Backend.purge`, `YADTQ.command_worker`, `yadtq.store.search.workers`).
`add_parsers` adds their arguments to the `yadtq` parser; `COMMANDS` maps each name to its
function, as `yadtq.cli.main` expects.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from yadtq.config import Settings
from yadtq.errors import RET_ERROR, RET_OK, RET_USAGE, YADTQError
from yadtq.store.worker_commands import COMMANDS as WORKER_COMMANDS
from yadtq.task.status import FINAL_IN_ORDER

Command = Callable[[argparse.Namespace, Settings], int]


def add_parsers(sub: Any, common: argparse.ArgumentParser, make: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds cancel, purge, pause, resume, stop and inspect (`make` is the parser's `_sub`)."""
    p = make(sub, "cancel", [common], "cancel tasks: waiting ones never run, running ones are interrupted",
             "yadtq cancel 3f1c...-uuid\nyadtq cancel ID1 ID2 ID3",
             "Cancels each task that has not finished: it ends `cancelled`. A waiting task (queued, or\n"
             "waiting for a retry) never runs; a running one is interrupted within about a second, as\n"
             "a time limit would interrupt it, and nothing it returns is stored. Exit 1 if any id is\n"
             "unknown or finished already.")
    p.add_argument("task_ids", nargs="+", metavar="ID", help="task ids, e.g. 3f1c2b9e-...")

    p = make(sub, "purge", [common], "delete finished tasks of one status",
             "yadtq purge --status failed --yes\nyadtq purge --status success")
    p.add_argument("--status", required=True, choices=[s.value for s in FINAL_IN_ORDER],
                   help="delete every task of this status, records and histories, e.g. --status success")
    p.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")

    for name, what in (("pause", "stop taking new tasks (running ones finish)"), ("resume", "take tasks again"),
                       ("stop", "finish the running tasks, then leave")):
        p = make(sub, name, [common], f"tell one worker to {what}",
                 f"yadtq {name} W1\nyadtq {name} W1 W2",
                 f"Queues `{name}` for each named worker; it takes it within about a second.")
        p.add_argument("workers", nargs="+", metavar="WORKER",
                       help="worker names, as `yadtq workers` lists them, e.g. W1 W2")

    p = make(sub, "inspect", [common], "what each live worker runs now, with its slots and partitions",
             "yadtq inspect\nyadtq inspect --json | jq '.[].tasks'")
    p.add_argument("--json", action="store_true", help="print one object per worker as JSON")


def cmd_cancel(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    code = RET_OK
    with YADTQ(s, create_topic=False) as q:
        for tid in args.task_ids:
            try:
                rec = q.cancel(tid, by="cli")
            except YADTQError as exc:
                print(f"yadtq: error: {exc}", file=sys.stderr)
                code = RET_ERROR
                continue
            running = " while running: its run is being interrupted" if "while running" in (rec.error or "") else ""
            print(f"{tid} cancelled{running}")
    return code


def cmd_purge(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    with YADTQ(s, create_topic=False) as q:
        count = q.backend.counts().get(args.status, 0)
        if not args.yes:
            if not sys.stdin.isatty():
                print("yadtq: error: purge deletes records: add --yes to confirm", file=sys.stderr)
                return RET_USAGE
            if input(f"delete {count} {args.status} task(s)? [y/N] ").strip().lower() not in ("y", "yes"):
                return RET_OK
        deleted = 0
        while (n := q.backend.purge(args.status)) > 0:
            deleted += n
    print(f"purged {deleted} {args.status} task(s)")
    return RET_OK


def _worker_command(command: str) -> Command:
    def run(args: argparse.Namespace, s: Settings) -> int:
        from yadtq.client.client import YADTQ
        code = RET_OK
        with YADTQ(s, create_topic=False) as q:
            known = q.live.workers()
            for name in args.workers:
                if name not in known:
                    print(f"yadtq: error: no worker named {name!r} in the registry "
                          f"(known: {', '.join(sorted(known)) or 'none'})", file=sys.stderr)
                    code = RET_ERROR
                    continue
                q.command_worker(name, command)
                print(f"{command} queued for {name}")
        return code
    return run


def cmd_inspect(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.cli.display import duration
    from yadtq.client.client import YADTQ
    from yadtq.store.search import workers
    with YADTQ(s, create_topic=False) as q:
        live = [w for w in workers(q.live) if w.get("status") == "ALIVE"]
        records = {r.task_id: r for r in q.backend.get_many([t for w in live for t in w["running"]])}
    now = time.time()
    out: list[dict[str, Any]] = []
    for w in live:
        tasks = [{"task_id": t, "task": records[t].task if t in records else None,
                  "started": records[t].started if t in records else None,
                  "running_for": round(now - (records[t].started or now), 3) if t in records else None,
                  "partition": records[t].partition if t in records else None}
                 for t in w["running"]]
        out.append({"name": w["name"], "host": w.get("host"), "pid": w.get("pid"), "state": w.get("state"),
                    "slots": w.get("concurrency"), "slots_in_use": w["slots_in_use"],
                    "partitions": w.get("partitions", []), "last_heartbeat": w.get("last_heartbeat"),
                    "last_heartbeat_ago": round(w["last_heartbeat_ago"], 3),
                    "tasks": tasks})
    if args.json:
        print(json.dumps(out))
        return RET_OK
    for w in out:
        parts = ",".join(map(str, w["partitions"])) or "-"
        print(f"{w['name']:20} {w['state'] or '-':8} slots {w['slots_in_use']}/{w['slots'] or '?'}  "
              f"partitions {parts}  heartbeat {duration(w['last_heartbeat_ago'])} ago")
        for t in w["tasks"]:
            ran = duration(t["running_for"]) if t["running_for"] is not None else "?"
            print(f"    {t['task_id']} {t['task'] or '?'} running {ran} (partition {t['partition']})")
    if not out:
        print("no live worker has sent a heartbeat (is the monitor running?)")
    return RET_OK


COMMANDS: dict[str, Command] = {
    "cancel": cmd_cancel, "purge": cmd_purge, "inspect": cmd_inspect,
    **{c: _worker_command(c) for c in WORKER_COMMANDS},
}

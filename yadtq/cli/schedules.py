"""`yadtq schedules`: list periodic schedules with their next and last run, add one, remove one.

    yadtq schedules
    yadtq schedules add report-10s add 1 2 --every 10
    yadtq schedules add nightly cleanup --cron "0 3 * * *" --catch-up skip
    yadtq schedules remove nightly
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from yadtq.config import Settings
from yadtq.errors import RET_ERROR, RET_OK, RET_USAGE, SubmissionRefused

SubParser = Callable[..., argparse.ArgumentParser]


def add_parser(sub: Any, parents: list[argparse.ArgumentParser], make: SubParser) -> None:
    """Adds `schedules` (with its actions `add` and `remove`) to the `yadtq` parser."""
    p = make(sub, "schedules", parents, "periodic schedules: list with next and last run, add, remove",
             "yadtq schedules\n"
             "yadtq schedules add report-10s add 1 2 --every 10\n"
             'yadtq schedules add nightly cleanup --cron "0 3 * * *" --catch-up skip\n'
             "yadtq schedules remove nightly",
             "Lists the periodic schedules (those @periodic declares, registered when a worker that\n"
             "imports them starts, and those added at run time) with their next and last run. Every\n"
             "worker and the monitor fire them; each slot fires once. Cron times are UTC.")
    p.add_argument("--json", action="store_true", help="print JSON")
    actions = p.add_subparsers(dest="action", metavar="ACTION",
                               help="add or remove (none: list the schedules)")
    a = actions.add_parser("add", parents=parents, help="add a schedule, or replace one of that name")
    a.add_argument("name", help="schedule name, e.g. nightly")
    a.add_argument("task", help="task name, e.g. add")
    a.add_argument("args", nargs="*", help="arguments, each read as JSON (else as a string), e.g. 1 2")
    when = a.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", type=int, metavar="S", help="every S seconds (on multiples of S), e.g. --every 10")
    when.add_argument("--cron", metavar="EXPR", help='cron expression in UTC, e.g. --cron "*/5 * * * *"')
    a.add_argument("--kwargs", metavar="JSON", help='keyword arguments as a JSON object, e.g. --kwargs \'{"y": 2}\'')
    a.add_argument("--catch-up", choices=["once", "skip"], default="once",
                   help="a slot missed while nothing ran: fire it once, late (default), or skip it")
    a.add_argument("--unchecked", action="store_true", help="do not check the call against what live workers serve")
    a.add_argument("--json", action="store_true", help="print the schedule as JSON")
    r = actions.add_parser("remove", parents=parents, help="remove a schedule (its tasks already fired stay)")
    r.add_argument("name", help="schedule name, e.g. nightly")


def _value(word: str) -> Any:
    try:
        return json.loads(word)
    except ValueError:
        return word


def cmd_schedules(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    with YADTQ(s, create_topic=False) as q:
        if args.action == "remove":
            if not q.remove_schedule(args.name):
                print(f"yadtq: error: no schedule {args.name!r}", file=sys.stderr)
                return RET_ERROR
            print(f"removed {args.name}")
            return RET_OK
        if args.action == "add":
            kwargs = _value(args.kwargs) if args.kwargs else {}
            if not isinstance(kwargs, dict):
                print("yadtq: error: --kwargs must be a JSON object", file=sys.stderr)
                return RET_USAGE
            try:
                state = q.add_schedule(args.name, args.task, every=args.every, cron=args.cron,
                                       args=[_value(a) for a in args.args], kwargs=kwargs, catch_up=args.catch_up,
                                       unchecked=args.unchecked)
            except SubmissionRefused as exc:
                print(f"yadtq: error: {exc}; not added (--unchecked adds it anyway)", file=sys.stderr)
                return RET_USAGE
            states = [state]
        else:
            states = q.schedules()
    if args.json:
        out = [st.as_dict() for st in states]
        print(json.dumps(out[0] if args.action == "add" else out))
        return RET_OK
    for st in states:
        print(schedule_line(st.as_dict()))
    if not states:
        print("no schedules (add one: yadtq schedules add NAME TASK [ARGS...] --every S)")
    return RET_OK


def schedule_line(d: dict[str, Any]) -> str:
    """`nightly  cleanup()  cron 0 3 * * *  next 2026-12-04 03:00:00 (in 15h 2m)  last -  fired 0`."""
    from yadtq.cli.display import when
    call = ", ".join([*(json.dumps(a) for a in d["args"]), *(f"{k}={json.dumps(v)}" for k, v in d["kwargs"].items())])
    every = f"every {d['every']}s" if d["every"] is not None else f"cron {d['cron']}"
    skip = f" skipped={d['skipped']}" if d["skipped"] else ""
    return (f"{d['name']:16} {d['task']}({call})  {every}  next {when(d['next_run'])}  last {when(d['last_run'])}"
            f"  fired={d['fired']}{skip}  catch_up={d['catch_up']}")

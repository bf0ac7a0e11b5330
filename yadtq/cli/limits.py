"""`yadtq limits`: list the rate and concurrency limits, set them at run time, or drop what was set.

    yadtq limits
    yadtq limits set email --rate 10/s --max-concurrency 3
    yadtq limits set email --rate none        # no rate limit, over the decorator's
    yadtq limits reset email                  # back to the decorator's limits
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from yadtq.config import Settings
from yadtq.errors import RET_OK, RET_USAGE, ConfigError

NONE_WORDS = ("none", "off", "unlimited")
EXAMPLES = ("yadtq limits\nyadtq limits set email --rate 10/s --max-concurrency 3\n"
            "yadtq limits set email --rate none\nyadtq limits reset email\nyadtq limits --json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=["list", "set", "reset"],
                   help="list (the default), set, or reset (drop the limits set at run time)")
    p.add_argument("task", nargs="?", help="with set or reset: the task name, e.g. email")
    p.add_argument("--rate", metavar="N/s|N/m|N/h|none", help="farm-wide starts per second, minute or hour, "
                   "e.g. --rate 10/s; none: no rate limit")
    p.add_argument("--max-concurrency", metavar="N|none", help="farm-wide runs at once, e.g. --max-concurrency 3; "
                   "none: no limit")
    p.add_argument("--json", action="store_true", help="print the limits as JSON")


def _count(text: str) -> int | None:
    if text.lower() in NONE_WORDS:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--max-concurrency {text!r}: an integer >= 1, or none") from None


def run(args: argparse.Namespace, s: Settings) -> int:
    from yadtq.client.client import YADTQ
    from yadtq.store.limits import UNSET
    if args.action != "list" and not args.task:
        print(f"yadtq: error: limits {args.action} needs a task name", file=sys.stderr)
        return RET_USAGE
    if args.action == "set" and args.rate is None and args.max_concurrency is None:
        print("yadtq: error: limits set needs --rate and/or --max-concurrency", file=sys.stderr)
        return RET_USAGE
    with YADTQ(s, create_topic=False) as q:
        if args.action == "set":
            rate = UNSET if args.rate is None else None if args.rate.lower() in NONE_WORDS else args.rate
            conc = UNSET if args.max_concurrency is None else _count(args.max_concurrency)
            rows = [q.set_limit(args.task, rate_limit=rate, max_concurrency=conc)]
        elif args.action == "reset":
            rows = [q.set_limit(args.task, reset=True)]
        else:
            rows = q.limits()
    if args.json:
        print(json.dumps(rows if args.action == "list" else rows[0]))
        return RET_OK
    for row in rows:
        print(line(row))
    if not rows:
        print("no task has a rate or concurrency limit")
    return RET_OK


def line(row: dict[str, Any]) -> str:
    """One task's limits: each with where it comes from ((set): at run time), and its counted runs."""
    def show(field: str) -> str:
        value = row[field]
        return "-" if value is None else f"{value}{' (set)' if row[f'{field}_from'] == 'set' else ''}"
    return (f"{row['task']:24} rate={show('rate_limit'):14} max_concurrency={show('max_concurrency'):10} "
            f"key_concurrency={show('key_concurrency'):6} running={row['running']}")

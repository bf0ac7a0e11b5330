"""The `yadtq` command line: every command, argument, help text and example.

Kept apart from `cli.py` (which runs the commands) so each stays readable.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

from yadtq.cli.schedules import add_parser as add_schedules_parser
from yadtq.task.status import STATUSES


class _Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for a mistyped command or choice."""

    def error(self, message: str) -> NoReturn:
        from yadtq.cli.display import did_you_mean
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            guess = did_you_mean(m[1], re.findall(r"'([^']*)'", m[2]))
            if guess:
                message += f"; did you mean {guess!r}?"
        super().error(message)


_HELP = argparse.RawDescriptionHelpFormatter


def _sub(sub: Any, name: str, parents: list[argparse.ArgumentParser], help: str, examples: str,
         description: str = "") -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, parents=parents, help=help, formatter_class=_HELP,
        description=(description or help[0].upper() + help[1:] + "."),
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()))
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("yadtq")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from yadtq.cli.display import signature_list
    from yadtq.task.modules import load_task_modules
    from yadtq.task.registry import registry
    load_task_modules([])  # the built-ins, for the help texts
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection (flags override YADTQ_* env vars)")
    g.add_argument("--kafka", metavar="HOST:PORT",
                   help="Kafka bootstrap servers, e.g. --kafka 127.0.0.1:9092 (YADTQ_KAFKA_BOOTSTRAP)")
    g.add_argument("--redis", metavar="URL",
                   help="Redis URL, e.g. --redis redis://:secret@10.0.0.5:6379/0 (YADTQ_REDIS_URL)")
    g.add_argument("--prefix", metavar="P", help="Redis key prefix, e.g. --prefix staging: (YADTQ_PREFIX)")
    g.add_argument("--log-dir", metavar="DIR", help="log directory, e.g. --log-dir /var/log/yadtq (YADTQ_LOG_DIR)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging (worker and monitor)")

    topic = argparse.ArgumentParser(add_help=False)
    topic.add_argument("--topic", metavar="NAME", help="tasks topic, e.g. --topic images (YADTQ_TOPIC, default tasks)")
    topic.add_argument("--partitions", type=int, metavar="N",
                       help="partitions when the topic is created, e.g. --partitions 8 (YADTQ_PARTITIONS)")

    parser = _Parser(prog="yadtq", description="YADTQ: a distributed task queue on Kafka and Redis.",
                     formatter_class=_HELP,
                     epilog="Start everything with `make run`; `yadtq COMMAND --help` shows each command's "
                            "options and examples.")
    parser.add_argument("--version", action="version", version=f"yadtq {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = _sub(sub, "run", [common], "start the Procfile's processes; Ctrl+C stops them in order",
             "yadtq run                      # what `make run` does\n"
             "yadtq run --procfile my.Procfile --grace 60",
             "Starts every process of the Procfile (services, monitor, dashboard, farm). When one\n"
             "ends, or on Ctrl+C, the others are stopped one at a time in reverse order (the\n"
             "farm first, services last), each with up to --grace seconds; a second Ctrl+C\n"
             "kills what is left.")
    p.add_argument("--procfile", default="Procfile", metavar="PATH", help="e.g. --procfile Procfile (the default)")
    p.add_argument("--grace", type=float, default=30.0, metavar="S",
                   help="seconds each process gets to stop before it is killed, e.g. --grace 60 (default 30)")
    p.add_argument("--queues", metavar="LIST", help="named queues the farm's workers serve, e.g. "
                   "--queues high,default,low or high:5,default:3,low:1 (YADTQ_QUEUES)")

    p = _sub(sub, "services", [common, topic], "start the embedded broker and Redis if none answers",
             "yadtq services\n"
             "YADTQ_REDIS_URL=redis://127.0.0.1:6380/0 yadtq services --stay\n"
             "yadtq services --redis-ha\n"
             "yadtq services --redis-cluster 3",
             "Starts tansu (Kafka protocol) and Redis where nothing answers at the configured\n"
             "addresses, uses what answers there, and adopts ones an earlier run left behind.\n"
             "Refuses a port held by something that is not Kafka/Redis. Ctrl+C stops what it started.")
    p.add_argument("--stay", action="store_true",
                   help="stay in the foreground even when nothing needed starting (the Procfile uses it)")
    p.add_argument("--broker", choices=["embedded", "kafka"], help="broker to start: the embedded one, or Apache "
                   "Kafka fetched once with Maven, e.g. --broker kafka (YADTQ_BROKER)")
    p.add_argument("--nodes", type=int, default=1, metavar="N",
                   help="Apache Kafka nodes for --broker kafka, e.g. --nodes 3 (default 1)")
    p.add_argument("--redis-ha", action="store_true",
                   help="start a Redis primary, a replica and three Sentinels instead of one Redis, and print "
                        "the YADTQ_REDIS_URL=redis+sentinel://... line every process must then use")
    p.add_argument("--redis-cluster", type=int, metavar="N",
                   help="start a Redis Cluster of N primaries instead of one Redis, e.g. --redis-cluster 3, and print "
                        "the YADTQ_REDIS_URL=redis+cluster://... line every process must then use")

    p = _sub(sub, "wait", [common], "wait until the broker and Redis serve (Redis done loading its data)",
             "yadtq wait && yadtq monitor\nyadtq wait --timeout 120")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after S seconds without an answer, e.g. --timeout 120 (default 60; "
                        "a Redis still loading its data extends it)")

    p = _sub(sub, "worker", [common, topic], "run a worker in consumer group 'workers'",
             "yadtq worker --name W1\n"
             "yadtq worker --name W2 --tasks mypkg.mytasks       # mypkg/ in the current folder\n"
             "yadtq worker --name S1 --standby\n"
             "yadtq worker --name W1 --crash after:3-5 --seed 7")
    p.add_argument("--name", help="worker name, unique among live workers, e.g. --name W1 (default host-pid)")
    p.add_argument("--tasks", action="append", default=[], metavar="MODULE",
                   help="import MODULE's @task functions (repeatable; the current folder is searched), "
                        "e.g. --tasks mypkg.mytasks")
    p.add_argument("--standby", action="store_true", help="own no partitions until a failure orphans some")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="tasks run at once in this process: threads, or one event loop for async def tasks "
                        "(YADTQ_CONCURRENCY, default 8), e.g. --concurrency 16")
    p.add_argument("--tries", type=int, metavar="N", help="default attempts per task, e.g. --tries 5 (YADTQ_TRIES)")
    p.add_argument("--time-limit", type=float, metavar="S",
                   help="default time limit per task, seconds, 0 = none, e.g. --time-limit 30 (YADTQ_TIME_LIMIT)")
    p.add_argument("--crash", metavar="SPEC", help="crash injection: after:3-5 | after:N | prob:P, optionally "
                   "@before-claim | @during (default) | @after-complete, e.g. after:3-5@after-complete")
    p.add_argument("--seed", type=int, metavar="N", help="seed for --crash, e.g. --seed 7")
    p.add_argument("--heartbeat-interval", type=float, metavar="S",
                   help="seconds between heartbeats, e.g. --heartbeat-interval 2 (YADTQ_HEARTBEAT_INTERVAL)")
    p.add_argument("--queues", metavar="LIST",
                   help="named queues to serve, highest priority first, e.g. --queues high,default,low; "
                        "with weights instead of strict order: --queues high:5,default:3,low:1 (YADTQ_QUEUES)")

    p = _sub(sub, "monitor", [common, topic], "watch heartbeats, declare workers ALIVE/DEAD",
             "yadtq monitor\nyadtq monitor --dead-after 30")
    p.add_argument("--dead-after", type=float, metavar="S",
                   help="seconds without heartbeat before DEAD, e.g. --dead-after 30 (YADTQ_DEAD_AFTER)")

    p = _sub(sub, "api", [common, topic], "serve the HTTP API and Prometheus metrics",
             "yadtq api\nYADTQ_API_TOKEN=secret yadtq api --address 0.0.0.0:8000")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="where to listen, e.g. --address 0.0.0.0:8000 (YADTQ_API_ADDRESS, default 127.0.0.1:8000)")

    p = _sub(sub, "produce", [common], "read tasks from stdin, one per line",
             "printf 'add 1 2\\nmultiply 3 4\\n' | yadtq produce tasks 4\n"
             "seq 1000 | sed 's/^/add 1 /' | yadtq produce tasks 4 --ids > ids.txt\n"
             "tail -f a_tasks.txt | yadtq produce tasks 4\n"
             "echo end | yadtq produce tasks 4          # stops every worker and the monitor",
             "Reads tasks from stdin, one per line, and publishes them:\n"
             "  add 1 2                                   shorthand: task name, then arguments (JSON, else text)\n"
             '  {"task": "add", "args": [1, 2]}           a JSON task message ("task-id", "kwargs",\n'
             '                                            "tries", "time-limit", "queue" optional)\n'
             "  # comment, blank lines                    skipped; a bad line is reported and skipped\n"
             "  end                                       sends the end marker to every partition: every\n"
             "                                            worker drains and exits, then the monitor (this\n"
             "                                            ends a `make run` stack)")
    p.add_argument("topic", help="tasks topic, e.g. tasks (workers serve YADTQ_TOPIC, default tasks)")
    p.add_argument("partitions", type=int, help="partitions the topic is created with if missing, e.g. 4")
    p.add_argument("--ids", action="store_true",
                   help="print each task id on stdout once the broker has it (progress then goes to stderr)")

    p = _sub(sub, "submit", [common, topic], "submit one task, print its id",
             "yadtq submit add 1 2 --wait\n"
             "yadtq submit sleep 5 --tries 1 --time-limit 2\n"
             "yadtq submit resize photo.jpg 640 --tasks mypkg.mytasks\n"
             "yadtq submit add 1 2 --countdown 60 --expires 300\n"
             "yadtq submit add 1 2 --eta 2026-12-24T18:00:00Z\n"
             'yadtq submit echo \'{"a": [1, 2]}\' --unchecked',
             "Submits one task and prints its id. It is checked against the tasks live workers serve "
             "(unknown name or arguments that do not fit: exit 2, nothing sent); before any worker has "
             "announced, against the names below. Tasks the built-in workers run:\n" + signature_list(registry))
    p.add_argument("task", help="task name, e.g. add (see the list above)")
    p.add_argument("args", nargs="*", help="arguments, each read as JSON (else as a string), e.g. 1 2 or '[1, 2]'")
    p.add_argument("--wait", action="store_true", help="wait for the outcome and print it")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="with --wait: give up after S seconds, e.g. --timeout 30 (exit code 5)")
    p.add_argument("--json", action="store_true", help='print JSON, e.g. {"task-id": "..."}')
    p.add_argument("--tries", dest="task_tries", type=int, metavar="N", help="attempts for this task, e.g. --tries 5")
    p.add_argument("--time-limit", dest="task_time_limit", type=float, metavar="S",
                   help="time limit for this task in seconds, e.g. --time-limit 30")
    p.add_argument("--key", metavar="KEY",
                   help="ordering key: tasks with the same key run one at a time, in order, e.g. --key customer-42")
    p.add_argument("--queue", metavar="NAME",
                   help="named queue to send it to (default: the task's own, else 'default'), e.g. --queue email")
    p.add_argument("--countdown", type=float, metavar="S",
                   help="run it no sooner than S seconds from now (it is `scheduled` until then), e.g. --countdown 60")
    p.add_argument("--eta", metavar="TIME",
                   help="run it no sooner than TIME: ISO-8601 (UTC unless it says) or epoch seconds, "
                        "e.g. --eta 2026-12-24T18:00:00Z")
    p.add_argument("--expires", metavar="S|TIME",
                   help="not started within S seconds (or by TIME), it ends `expired` and never runs, "
                        "e.g. --expires 300")
    p.add_argument("--result-ttl", dest="task_result_ttl", type=float, metavar="S",
                   help="keep its finished record S seconds (0: forever), e.g. --result-ttl 3600 "
                        "(default: the task's own, else YADTQ_RESULT_TTL)")
    p.add_argument("--tasks", action="append", default=[], metavar="MODULE",
                   help="also accept the task names of MODULE, e.g. --tasks mypkg.mytasks")
    p.add_argument("--unchecked", "--any-task", dest="unchecked", action="store_true",
                   help="send it without checking it against what live workers serve (a task only a future "
                        "worker will know)")

    p = _sub(sub, "status", [common], "a task's record: status, times, attempts, history",
             "yadtq status 3f1c...-uuid\nyadtq status 3f1c...-uuid --json\nyadtq status 3f1c...-uuid --follow")
    p.add_argument("task_id", metavar="ID", help="the id submit printed, e.g. 3f1c2b9e-...")
    p.add_argument("--json", action="store_true", help="print the record and its history as JSON")
    p.add_argument("--follow", "-f", action="store_true",
                   help="print each change (status, progress) as it happens, until the task ends "
                        "(exit code as for `result`; with --json one JSON record per line)")

    p = _sub(sub, "workflow", [common], "a workflow's status and each node's state, as a tree",
             "yadtq workflow wf-3f1c...\nyadtq workflow wf-3f1c... --json")
    p.add_argument("workflow_id", metavar="ID", help="the id submit_workflow returned, e.g. wf-3f1c...")
    p.add_argument("--json", action="store_true", help="print the workflow and its nodes as JSON")

    p = _sub(sub, "result", [common], "wait for a task's result and print it as JSON",
             "yadtq result 3f1c...-uuid --timeout 30")
    p.add_argument("task_id", metavar="ID", help="the id submit printed, e.g. 3f1c2b9e-...")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up after S seconds, e.g. --timeout 30 (exit code 5; default: wait forever)")

    p = _sub(sub, "tasks", [common], "counts and lists of tasks by status",
             "yadtq tasks\nyadtq tasks --status failed --limit 5\nyadtq tasks --limit 0   # counts only\n"
             "yadtq tasks --json | jq .counts")
    p.add_argument("--status", choices=[s.value for s in STATUSES], help="only this status, e.g. --status failed")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="newest N per status (default 20; 0 = counts only), e.g. --limit 100")
    p.add_argument("--json", action="store_true", help="print counts and records as JSON")

    p = _sub(sub, "requeue", [common, topic], "run failed tasks again, or republish stale queued ones",
             "yadtq requeue 3f1c...-uuid\nyadtq requeue --stale 300")
    p.add_argument("task_ids", nargs="*", metavar="ID", help="ids of failed tasks, e.g. 3f1c...-uuid")
    p.add_argument("--stale", type=float, metavar="SECONDS",
                   help="republish tasks queued for longer than this, e.g. --stale 300")

    p = _sub(sub, "dlq", [common, topic], "the dead-letter queue: list it, or requeue by task id",
             "yadtq dlq\nyadtq dlq list --limit 10\nyadtq dlq requeue 3f1c...-uuid")
    p.add_argument("action", nargs="?", default="list", choices=["list", "requeue"],
                   help="list (the default) or requeue")
    p.add_argument("task_ids", nargs="*", metavar="ID", help="with requeue: task ids, e.g. 3f1c...-uuid")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="newest N letters (default 50)")
    p.add_argument("--queue", metavar="NAME", help="the dead letters of this named queue, e.g. --queue email")
    p.add_argument("--json", action="store_true", help="print the letters as JSON")

    p = _sub(sub, "queues", [common, topic], "per named queue: tasks waiting, lag, throughput, dead letters",
             "yadtq queues\nyadtq queues --json | jq '.[] | select(.queued > 0)'")
    p.add_argument("--window", type=float, default=60.0, metavar="S",
                   help="throughput over the last S seconds (default 60)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")

    p = _sub(sub, "workers", [common], "the worker registry and failure history",
             "yadtq workers\nyadtq workers --json | jq '.workers | keys'")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="newest N failures (default 20)")
    p.add_argument("--json", action="store_true", help="print the registry and failures as JSON")

    from yadtq.cli import limits
    limits.add_arguments(_sub(sub, "limits", [common], "farm-wide rate and concurrency limits: list, set, reset",
                              limits.EXAMPLES))
    add_schedules_parser(sub, [common], _sub)
    from yadtq.cli.control import add_parsers as add_control_parsers
    add_control_parsers(sub, common, _sub)  # cancel, purge, pause, resume, stop, inspect

    p = _sub(sub, "export", [common], "write task records, heartbeats, failures, series to files",
             "yadtq export --out export/\nyadtq export --out export/ --format parquet --limit 10000")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (created), e.g. --out export/")
    p.add_argument("--limit", type=int, metavar="N", help="at most N task records per status (default all)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format (parquet needs pyarrow)")
    return parser

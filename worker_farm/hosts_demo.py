"""`make hosts-demo`: YADTQ on five hosts made of network namespaces on this machine (needs root).

    python -m worker_farm.hosts_demo [--tasks 300] [--cut 30] [--skew 90s]

One services host (broker, Redis, monitor), three worker hosts with a farm of two each (w1's clock
`--skew` ahead, w3's behind), a client host. It submits tasks of three types from the client host
and shows where they ran, then cuts one worker host off the network for `--cut` seconds while
tasks keep coming, mends it, and shows that every task finished once, and that the cut host's
workers are back as the same processes.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

from worker_farm.hosts import Lab
from worker_farm.multihost import MultiHost
from yadtq.client.client import YADTQ
from yadtq.task.status import Status

HOSTS = ("w1", "w2", "w3")
QUICK = {"heartbeat_interval": 1.0, "dead_after": 4.0, "lease": 4.0, "session_timeout_ms": 6000,
         "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 20000, "connect_timeout": 3.0}


def _wait_done(q: YADTQ, ids: list[str], timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        records = [q.status(i) for i in ids]
        if all(r.done for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def _by_host(records: list[Any]) -> dict[str, collections.Counter[str]]:
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in records:
        out[str(r.worker).split("-")[0]][r.task] += 1
    return dict(sorted(out.items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=300, help="tasks per round (default 300)")
    p.add_argument("--cut", type=float, default=30.0, help="seconds the host stays cut off (default 30)")
    p.add_argument("--skew", default="90s", help="w1's clock runs this far ahead and w3's this far behind, as on "
                   "hosts without NTP (libfaketime; default 90s, 0s for none)")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="yadtq-hosts-"))
    with Lab(["svc", *HOSTS, "client"]) as lab:
        print("hosts: " + ", ".join(f"{h} {lab.ip(h)}" for h in lab.hosts) + f"  (logs in {base})")
        clocks = {} if args.skew.strip("+-") in ("0", "0s") else {"w1": f"+{args.skew}", "w3": f"-{args.skew}"}
        system = MultiHost(lab, base, HOSTS, overrides=dict(QUICK), clocks=clocks)
        system.start()
        q = YADTQ(system.settings)
        try:
            while sum(w.get("status") == "ALIVE" for w in q.live.workers().values()) < 2 * len(HOSTS):
                time.sleep(0.5)
            for host in HOSTS:
                print(f"  {host}'s clock: {round(system.clock(host) - time.time()):+d}s from this machine's")
            print("every worker ALIVE; submitting from the client host")
            kinds = ("add", "multiply", "sleep")
            specs = [(k, [0.05] if k == "sleep" else [i, 2]) for i in range(args.tasks // 3) for k in kinds]
            started = time.monotonic()
            records = _wait_done(q, system.submit("client", specs), 120)
            print(f"{len(records)} tasks in {time.monotonic() - started:.1f}s; where they ran:")
            for host, counts in _by_host(records).items():
                print(f"  {host}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
            pids = {n: w.get("pid") for n, w in q.live.workers().items()}
            print(f"cutting w1 off the network for {args.cut:g}s while tasks keep coming")
            lab.cut("w1")
            ids: list[str] = []
            cut_at = time.monotonic()
            while time.monotonic() - cut_at < args.cut:
                ids += system.submit("client", [("add", [i, 1]) for i in range(30)])
                time.sleep(1.0)
            lab.mend("w1")
            print("w1 is back; waiting for every task")
            records = _wait_done(q, ids, 120)
            ok = sum(r.status == Status.SUCCESS for r in records)
            print(f"{ok} of {len(records)} tasks succeeded; where they ran:")
            for host, counts in _by_host(records).items():
                print(f"  {host}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
            declared = sorted({f["worker"] for f in q.live.failures()})
            print(f"declared DEAD during the cut: {', '.join(declared) or 'none'}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                now = {n: w.get("pid") for n, w in q.live.workers().items() if w.get("status") == "ALIVE"}
                if now == pids:
                    break
                time.sleep(0.5)
            same = now == pids
            print("every worker ALIVE again, the same processes" if same else f"workers now: {now}")
            return 0 if ok == len(records) and same else 1
        finally:
            q.close()


if __name__ == "__main__":
    raise SystemExit(main())

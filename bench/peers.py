"""Peers measured beside YADTQ and Celery (issue 22): `add` end to end with 2 worker processes.

Each peer runs on a private Redis with each of common.REDIS_SETTINGS (YADTQ's `appendfsync always`
and no persistence), its workers and its client as subprocesses of the peer's own interpreter
(arq cannot share YADTQ's venv). The client prints its figures as JSON; a setting's runs share
one Redis and one set of workers, as Celery's do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REDIS_SETTINGS, ROOT, attempt, private_redis, repeat

CLIENT_TIMEOUT_S = 900


@dataclass(frozen=True)
class Peer:
    key: str  # its name in the results, e.g. "dramatiq"
    name: str  # its name and version, e.g. "Dramatiq 2.2.1"
    setup: str  # how it runs, e.g. "2 processes x 8 threads"
    python: Callable[[], str]  # its interpreter (arq's venv is made on first use)
    workers: Callable[[str], list[list[str]]]  # interpreter -> one command per worker process group
    client: str  # its app module's path under ROOT, run as `python <client> N`
    env: dict[str, str] = field(default_factory=dict)


def pinned(requirements: Path, name: str) -> str:
    """The version `name` is pinned to in a requirements file ('?' when it is not)."""
    found = re.search(rf"^{re.escape(name)}(\[[^]]*\])?==(\S+)", requirements.read_text(), re.MULTILINE)
    return found.group(2) if found else "?"


def _env(peer: Peer, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YADTQ_", "BENCH_"))}
    return {**env, **peer.env, "BENCH_REDIS_URL": url, "PYTHONPATH": str(ROOT)}


@contextlib.contextmanager
def _workers(peer: Peer, python: str, env: dict[str, str]) -> Iterator[None]:
    # Each in its own session: a supervisor's children (Dramatiq's worker processes) die with it.
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) for cmd in peer.workers(python)]
    try:
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()


def _client(python: str, peer: Peer, env: dict[str, str], n: int) -> dict[str, float]:
    out = subprocess.run([python, peer.client, str(n)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=CLIENT_TIMEOUT_S)
    if out.returncode != 0:
        raise RuntimeError(f"{peer.name} client exited {out.returncode}: {out.stderr.strip()[-600:]}")
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def throughput(peer: Peer, n: int, runs: int, redis: str) -> dict[str, Any]:
    """`runs` runs of `n` add tasks on a fresh Redis with the named REDIS_SETTINGS: medians, min, max, load."""
    python = peer.python()
    with private_redis(redis, prefix=f"{peer.key}-bench-") as url:
        env = _env(peer, url)
        with _workers(peer, python, env):
            return repeat(runs, _client, python, peer, env, n)


def run(peers: Sequence[tuple[Peer, int]], runs: int, say: Any = print) -> dict[str, Any]:
    """Every (peer, task count) at every Redis setting: {peer key: {"label", "tasks", setting: figures}}."""
    out: dict[str, Any] = {}
    for peer, n in peers:
        label = f"{peer.name} ({peer.setup}, {n:,} tasks)"
        by = out[peer.key] = {"label": label, "tasks": n}
        for redis in REDIS_SETTINGS:
            by[redis] = fig = attempt(throughput, peer, n, runs, redis)
            text = (f"ERROR {fig['error']}" if "error" in fig else
                    f"{fig['end_to_end_per_s']['median']:,.0f} tasks/s (load {fig['load']['median']:.1f})")
            say(f"  {label}, Redis {redis.replace('_', ' ')}: {text}", flush=True)
    return out

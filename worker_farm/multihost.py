"""The whole system spread over a `Lab`'s hosts: services and the monitor on one, a farm on each worker host.

Used by `make hosts-demo` (bench/hosts_demo.py) and the several-hosts tests. Every process gets
the same settings but its own listen address: the broker and Redis bind the services host's
address, and everything else reaches them there, as it would across machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker_farm.fake_clock import skewed_env
from worker_farm.hosts import Lab
from yadtq.config import Settings

BROKER_PORT = 9092
REDIS_PORT = 6379


@dataclass
class MultiHost:
    """Services on `lab`'s `services` host, a farm of `workers` on each of `worker_hosts`."""

    lab: Lab
    base: Path
    worker_hosts: Sequence[str]
    services_host: str = "svc"
    workers: int = 2
    task_modules: Sequence[str] = ()
    pythonpath: Sequence[str] = ()
    overrides: dict[str, object] = field(default_factory=dict)
    # Per host, a wall clock off by this skew (libfaketime's syntax, e.g. "+90s"): hosts without NTP.
    clocks: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        ip = self.lab.ip(self.services_host)
        base = Settings(kafka_bootstrap=f"{ip}:{BROKER_PORT}", redis_url=f"redis://{ip}:{REDIS_PORT}/0",
                        log_dir=str(self.base / "logs"), data_dir=str(self.base / "data"),
                        partitions=2 * len(self.worker_hosts) * self.workers)
        return base.replace(**self.overrides) if self.overrides else base

    def env(self, host: str | None = None) -> dict[str, str]:
        """The environment of a process on `host` (with the host's own clock, if it has one)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
        env.update(self.settings.env())
        root = Path(__file__).resolve().parent.parent
        env["PYTHONPATH"] = os.pathsep.join([str(root), *self.pythonpath])
        env["PYTHONUNBUFFERED"] = "1"
        if host in self.clocks:
            env = skewed_env(env, self.clocks[host], self.base / f"clock-{host}")
        return env

    def _start(self, label: str, host: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        self.base.mkdir(parents=True, exist_ok=True)
        out = open(self.base / f"{label}.out", "wb")  # noqa: SIM115 (the process keeps it)
        proc = self.lab.popen(host, argv, env=self.env(host), out=out, cwd=self.base)
        self.procs[label] = proc
        return proc

    def start(self, timeout: float = 90.0) -> None:
        """Services, then the monitor and every farm; returns once the services answer."""
        py = sys.executable
        self._start("services", self.services_host, [py, "-m", "yadtq", "services", "--stay"])
        deadline = time.monotonic() + timeout
        ns = self.lab.hosts[self.services_host].ns
        wait = ["ip", "netns", "exec", ns, py, "-m", "yadtq", "wait", "--timeout", "1"]
        while subprocess.run(wait, env=self.env(self.services_host), capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.procs["services"].poll() is not None:
                raise RuntimeError(f"services did not start: {(self.base / 'services.out').read_text()[-2000:]}")
        self._start("monitor", self.services_host, [py, "-m", "yadtq", "monitor"])
        for host in self.worker_hosts:
            self.start_farm(host)

    def start_farm(self, host: str) -> subprocess.Popen[bytes]:
        tasks = [a for m in self.task_modules for a in ("--tasks", m)]
        return self._start(f"farm-{host}", host, [sys.executable, "-m", "worker_farm", "--workers", str(self.workers),
                                                  "--name-prefix", f"{host}-W", *tasks])

    def clock(self, host: str) -> float:
        """`time.time()` as a process on `host` reads it."""
        out = subprocess.run(["ip", "netns", "exec", self.lab.hosts[host].ns, sys.executable, "-c",
                              "import time; print(time.time())"], env=self.env(host), capture_output=True,
                             text=True, timeout=60, check=True)
        return float(out.stdout.strip())

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs.values())

    def output(self, label: str) -> str:
        return (self.base / f"{label}.out").read_text(errors="replace")

    def submit(self, host: str, specs: Sequence[tuple[str, list[Any]]]) -> list[str]:
        """Submits `specs` from `host`, as a program running there would; returns the task ids."""
        path = self.base / f"specs-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(list(specs)))
        code = ("import json\nfrom yadtq import YADTQ, Settings\n"
                "q = YADTQ(Settings.from_env())\n"
                f"print(json.dumps(q.submit_many([tuple(s) for s in json.load(open({str(path)!r}))])))\n")
        out = subprocess.run(["ip", "netns", "exec", self.lab.hosts[host].ns, sys.executable, "-c", code],
                             env=self.env(host), capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"submit from {host} failed: {out.stderr[-2000:]}")
        ids: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
        return ids

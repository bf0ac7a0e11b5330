"""Several hosts on one machine: Linux network namespaces on one bridge, and the faults a network has.

`Lab(["svc", "w1", "w2", "w3", "client"])` makes one network namespace per host, each with its
own address on a private /24 and its own loopback, joined by a bridge that lives in a namespace
of its own (the switch), so nothing in the machine's own network changes but one extra link:
the machine's namespace gets the subnet's `.1` on the bridge too, so a test process can talk
to the hosts directly. Processes run in a host with `lab.popen(host, argv)`.

Faults, each undone by its counterpart:
* `cut(host)` / `mend(host)`: the host's link on the switch goes down (a cable pulled).
* `block(host, port)` / `unblock(host)`: the host's outgoing TCP to one port is dropped
  (iptables in the host's namespace): a host that reaches Kafka but not Redis, or the reverse.
* `degrade(host, latency_ms, jitter_ms, loss)`: every TCP connection from the host to the
  services host goes through Toxiproxy (latency and jitter; this kernel has no netem) by a DNAT
  rule in the host's namespace, and a share of the packets the host receives is dropped by
  iptables' `statistic` match (real loss: TCP retransmits).

Needs root, `ip` (iproute2) and `iptables`; Toxiproxy is built once with `go install` and cached
(`toxiproxy_server()`). Traffic never leaves the namespaces the lab made.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TOXIPROXY_VERSION = "v2.12.0"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_API_PORT = 8474
PROXY_PORT_OFFSET = 10_000  # the proxy for port P listens on P + this, on the services host


class LabError(RuntimeError):
    """The lab could not be built or a fault could not be set."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done


def ensure_tools() -> None:
    """`ip` and `iptables`, installed with apt when missing (a fresh machine has neither for sure)."""
    if shutil.which("ip") and shutil.which("iptables"):
        return
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "iproute2", "iptables"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise LabError(f"{' '.join(cmd)} failed: {done.stderr[-1000:]}")


def toxiproxy_server() -> Path:
    """The Toxiproxy server binary, built with the Go toolchain the first time and cached."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yadtq" / f"toxiproxy-{TOXIPROXY_VERSION}"
    binary = cache / "server"
    if binary.exists():
        return binary
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise LabError("Toxiproxy is built with Go, and no `go` is on PATH")
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(cache), "GOFLAGS": "-mod=mod"}
    done = subprocess.run([go, "install", f"{TOXIPROXY_MODULE}@{TOXIPROXY_VERSION}"], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0 or not binary.exists():
        raise LabError(f"go install {TOXIPROXY_MODULE} failed: {done.stderr[-1000:]}")
    return binary


@dataclass(frozen=True)
class Host:
    name: str
    ns: str
    ip: str
    link: str  # the host's end of its cable, inside the host's namespace
    port: str  # the switch's end of that cable, inside the switch's namespace


class Lab:
    """Hosts as network namespaces on one bridge; `close()` (or the context manager) removes them all."""

    def __init__(self, names: Sequence[str], subnet: int | None = None) -> None:
        ensure_tools()
        self.tag = f"{os.getpid() % 10_000:04d}{random.randrange(100):02d}"
        third = subnet if subnet is not None else random.randrange(1, 250)
        self.prefix = f"10.213.{third}"
        self.gateway = f"{self.prefix}.1"
        self.switch = f"yq{self.tag}sw"
        self.hosts: dict[str, Host] = {}
        self._root_link = f"yq{self.tag}r"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._toxiproxy: subprocess.Popen[bytes] | None = None
        try:
            self._build(names)
        except BaseException:
            self.close()
            raise

    def _build(self, names: Sequence[str]) -> None:
        _run("ip", "netns", "add", self.switch)
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, name in enumerate(names, start=2):
            host = Host(name, f"yq{self.tag}{name}"[:15], f"{self.prefix}.{i}", f"yq{self.tag}h{i}",
                        f"yq{self.tag}s{i}")
            _run("ip", "netns", "add", host.ns)
            _run("ip", "link", "add", host.link, "type", "veth", "peer", "name", host.port)
            _run("ip", "link", "set", host.link, "netns", host.ns)
            _run("ip", "link", "set", host.port, "netns", self.switch)
            _run("ip", "-n", self.switch, "link", "set", host.port, "master", "br0", "up")
            _run("ip", "-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", host.link)
            _run("ip", "-n", host.ns, "link", "set", host.link, "up")
            _run("ip", "-n", host.ns, "link", "set", "lo", "up")
            self.hosts[name] = host
        peer = f"yq{self.tag}rs"
        _run("ip", "link", "add", self._root_link, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", self.switch)
        _run("ip", "-n", self.switch, "link", "set", peer, "master", "br0", "up")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self._root_link)
        _run("ip", "link", "set", self._root_link, "up")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ip(self, host: str) -> str:
        return self.hosts[host].ip

    def popen(self, host: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              out: IO[bytes] | int | None = None, cwd: str | Path | None = None) -> subprocess.Popen[bytes]:
        """Starts `argv` inside `host`, in a session of its own (so it can be signalled as a group)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.hosts[host].ns, *argv], env=dict(env or os.environ),
                                stdout=out, stderr=subprocess.STDOUT if out is not None else None, cwd=cwd,
                                start_new_session=True)
        self._procs.append(proc)
        return proc

    def run(self, host: str, *argv: str) -> str:
        """Runs a short command inside `host` and returns its output; raises `LabError` if it fails."""
        return _run("ip", "netns", "exec", self.hosts[host].ns, *argv).stdout

    # -- faults ---------------------------------------------------------------------------------

    def cut(self, host: str) -> None:
        _run("ip", "-n", self.switch, "link", "set", self.hosts[host].port, "down")

    def mend(self, host: str) -> None:
        _run("ip", "-n", self.switch, "link", "set", self.hosts[host].port, "up")

    def block(self, host: str, port: int) -> None:
        """Drops every TCP packet `host` sends to `port` on any host (no reset: a silent firewall)."""
        self.run(host, "iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP")

    def unblock(self, host: str) -> None:
        self.run(host, "iptables", "-F", "OUTPUT")

    def degrade(self, host: str, via: str, ports: Sequence[int], latency_ms: int, jitter_ms: int,
                loss: float) -> None:
        """`host`'s TCP to `ports` on `via` goes through Toxiproxy (latency and jitter on both ways),
        and `loss` of the packets `host` receives are dropped."""
        api = self._toxiproxy_api(via)
        target = self.ip(via)
        for port in ports:
            name = f"p{port}"
            listen = f"{target}:{port + PROXY_PORT_OFFSET}"
            _api(api, "POST", "/proxies", {"name": name, "listen": listen, "upstream": f"{target}:{port}",
                                            "enabled": True})
            for stream in ("downstream", "upstream"):
                _api(api, "POST", f"/proxies/{name}/toxics", {
                    "name": f"lat_{stream}", "type": "latency", "stream": stream,
                    "attributes": {"latency": latency_ms // 2, "jitter": jitter_ms // 2}})
            self.run(host, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", target, "--dport", str(port),
                     "-j", "DNAT", "--to-destination", listen)
        if loss > 0:
            self.run(host, "iptables", "-A", "INPUT", "-m", "statistic", "--mode", "random",
                     "--probability", f"{loss:.4f}", "-j", "DROP")

    def degraded_packets(self, host: str) -> int:
        """Packets of new connections `host` sent through the proxy (the DNAT rules' counters)."""
        out = self.run(host, "iptables", "-t", "nat", "-L", "OUTPUT", "-v", "-n", "-x")
        return sum(int(line.split()[0]) for line in out.splitlines() if "DNAT" in line)

    def restore(self, host: str, via: str) -> None:
        """Undoes `degrade`: no more rules in `host`, no more proxies (open connections through a
        proxy are closed with it, as a network would reset them)."""
        self.run(host, "iptables", "-t", "nat", "-F", "OUTPUT")
        self.run(host, "iptables", "-F", "INPUT")
        api = self._toxiproxy_api(via)
        proxies = _api(api, "GET", "/proxies", None)
        for name in proxies if isinstance(proxies, dict) else {}:
            _api(api, "DELETE", f"/proxies/{name}", None)

    def _toxiproxy_api(self, via: str) -> str:
        api = f"http://{self.ip(via)}:{TOXIPROXY_API_PORT}"
        if self._toxiproxy is None:
            self._toxiproxy = self.popen(via, [str(toxiproxy_server()), "-host", self.ip(via),
                                               "-port", str(TOXIPROXY_API_PORT)], out=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while True:
                try:
                    _api(api, "GET", "/version", None)
                    break
                except OSError:
                    if time.monotonic() > deadline or self._toxiproxy.poll() is not None:
                        raise LabError("Toxiproxy did not start") from None
                    time.sleep(0.1)
        return api

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Kills every process in every host, then removes the namespaces and the machine's link."""
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for host in self.hosts.values():
            for pid in _run("ip", "netns", "pids", host.ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for host in self.hosts.values():
            _run("ip", "netns", "del", host.ns, check=False)
        _run("ip", "link", "del", self._root_link, check=False)
        _run("ip", "netns", "del", self.switch, check=False)
        self.hosts.clear()


def _api(base: str, method: str, path: str, body: object) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None

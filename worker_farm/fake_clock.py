"""A process's own clock, ahead or behind the machine's, through libfaketime.

The clock-skew tests and the several-hosts lab (one clock per host) start processes with
`skewed_env`: wall-clock time moves by the skew, the monotonic clock does not (as on a
machine whose NTP is off, which is what a skewed host is).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
# libfaketime 0.9.10 (Debian 12) fails clock_nanosleep(TIMER_ABSTIME) with EINVAL, and CPython
# 3.11's time.sleep is built on it. Under the fake clock, time.sleep alone is rebuilt on select(),
# which libfaketime passes through; time.time() and everything else stay faked.
SLEEP_SHIM = """
import select, time

def _sleep(seconds):
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)

time.sleep = _sleep
"""


def ensure_libfaketime() -> Path:
    """Debian's libfaketime, installed with apt when missing (CI starts on a fresh machine)."""
    if not LIBFAKETIME.exists():
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "faketime"]):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    if not LIBFAKETIME.exists() or not shutil.which("faketime"):
        raise RuntimeError(f"libfaketime is not at {LIBFAKETIME} after installing Debian's faketime")
    return LIBFAKETIME


def skewed_env(env: dict[str, str], skew: str, shim_dir: Path) -> dict[str, str]:
    """`env` for a Python process whose wall clock is off by `skew` (libfaketime's syntax, e.g.
    "+90s", "-90s"); the sleep shim is written to `shim_dir`."""
    shim_dir.mkdir(parents=True, exist_ok=True)
    (shim_dir / "sitecustomize.py").write_text(SLEEP_SHIM)
    out = dict(env)
    out.update(LD_PRELOAD=str(ensure_libfaketime()), FAKETIME=skew, FAKETIME_DONT_FAKE_MONOTONIC="1",
               FAKETIME_NO_CACHE="1", PYTHONPATH=os.pathsep.join([str(shim_dir), env.get("PYTHONPATH", "")]))
    return out

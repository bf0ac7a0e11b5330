"""Dramatiq as a peer (issue 22): Redis broker and Redis results, `--processes 2 --threads 8`, one `send` a task.

The workers and the client (bench/dramatiq_app.py) run in YADTQ's venv: Dramatiq accepts its redis-py.
"""

from __future__ import annotations

import sys

from bench.common import ROOT
from bench.peers import Peer, pinned

PROCESSES = 2  # as YADTQ's 2 worker processes
THREADS = 8  # as YADTQ's concurrency 8


def peer() -> Peer:
    version = pinned(ROOT / "bench" / "requirements.txt", "dramatiq")
    return Peer("dramatiq", f"Dramatiq {version}", f"{PROCESSES} processes x {THREADS} threads", lambda: sys.executable,
                lambda python: [[python, "-m", "dramatiq", "bench.dramatiq_app", "--processes", str(PROCESSES),
                                 "--threads", str(THREADS)]],
                "bench/dramatiq_app.py")

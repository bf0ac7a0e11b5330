"""`yadtq run` doing the Procfile's `yadtq wait && ` itself (yadtq/ops/procfile.py, a gate):
the lines after it start once the gate opens, without the prefix; a closed gate or a process
that ends meanwhile ends the run instead."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

from yadtq.ops.procfile import Entry, Stack


def _stack(entries: list[Entry], gate, tmp_path: Path) -> tuple[Stack, io.StringIO]:
    out = io.StringIO()
    return Stack(entries, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, grace=5, out=out, clock=lambda: "t",
                 gate=gate), out


def test_gated_lines_start_once_the_gate_opens_without_the_prefix(tmp_path: Path) -> None:
    calls: list[float] = []

    def gate(stop: threading.Event) -> str | None:
        calls.append(time.monotonic())
        return None

    entries = [Entry("services", "sleep 30"), Entry("one", "yadtq wait && echo one-ran && sleep 30"),
               Entry("two", "yadtq wait && echo two-ran; exit 0")]
    stack, out = _stack(entries, gate, tmp_path)
    assert stack.run() == 0  # `two` ended with 0: the rest is stopped
    text = out.getvalue()
    assert len(calls) == 1  # one wait for every gated line
    assert "one-ran" in text and "two-ran" in text
    assert "started one (pid" in text and "): echo one-ran && sleep 30" in text


def test_a_closed_gate_starts_nothing_after_it_and_fails_the_run(tmp_path: Path) -> None:
    entries = [Entry("services", "sleep 30"), Entry("one", "yadtq wait && echo one-ran")]
    stack, out = _stack(entries, lambda stop: "Redis at 127.0.0.1:1 did not serve within 1s (no answer)", tmp_path)
    assert stack.run() == 1
    text = out.getvalue()
    assert "error: Redis at 127.0.0.1:1 did not serve" in text and "one-ran" not in text
    assert [r.entry.name for r in stack.running] == ["services"]


def test_a_process_ending_while_the_gate_waits_ends_the_run(tmp_path: Path) -> None:
    def gate(stop: threading.Event) -> str | None:
        return "stopped" if stop.wait(20) else "timed out"

    entries = [Entry("services", "echo broken; exit 4"), Entry("one", "yadtq wait && echo one-ran")]
    stack, out = _stack(entries, gate, tmp_path)
    began = time.monotonic()
    assert stack.run() == 1
    assert time.monotonic() - began < 10
    assert "services exited with code 4" in out.getvalue() and "one-ran" not in out.getvalue()


def test_lines_without_the_prefix_start_before_the_gate_and_the_stop_keeps_procfile_order(tmp_path: Path) -> None:
    running_at_gate: list[list[str]] = []

    def gate(stop: threading.Event) -> str | None:
        running_at_gate.append([r.entry.name for r in stack.running])
        return None

    entries = [Entry("services", "sleep 30"), Entry("monitor", "yadtq wait && sleep 30"),
               Entry("farm", "sleep 30"), Entry("api", "yadtq wait && exit 0")]
    stack, out = _stack(entries, gate, tmp_path)
    assert stack.run() == 0
    assert running_at_gate == [["services", "farm"]]  # the farm waits for the services itself
    assert "stopping in order: api, farm, monitor, services" in out.getvalue()

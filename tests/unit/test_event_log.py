"""The JSON-lines event log (yadtq.logs.EventLog): what a line holds."""

from __future__ import annotations

import io
import json
import os
import time

import pytest

from yadtq.logs import EventLog


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_holds_its_time_to_the_microsecond_and_the_fields_given_but_none() -> None:
    out = io.StringIO()
    before = time.time()
    EventLog(None, "worker-W1", stream=out).emit("task_started", task_id="t1", attempt=1, error=None)
    [line] = _lines(out)
    assert list(line) == ["ts", "event", "process", "pid", "task_id", "attempt"]
    assert (line["event"], line["process"], line["pid"], line["task_id"], line["attempt"]) == \
        ("task_started", "worker-W1", os.getpid(), "t1", 1)
    ts = line["ts"]
    assert isinstance(ts, float) and before - 1e-6 <= ts <= time.time()
    assert round(ts, 6) == ts


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_childs_lines_carry_its_own_pid() -> None:
    r, w = os.pipe()
    out = io.StringIO()
    log = EventLog(None, "worker-W1", stream=out)
    log.emit("before")
    pid = os.fork()
    if pid == 0:  # the child: writes its line's pid to the pipe and leaves at once
        try:
            log.emit("in_child")
            os.write(w, json.dumps(_lines(out)[-1]["pid"]).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = int(os.read(r, 100))
    os.waitpid(pid, 0)
    os.close(r)
    assert got == pid and _lines(out)[0]["pid"] == os.getpid()

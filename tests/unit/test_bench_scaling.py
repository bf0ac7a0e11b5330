"""The scaling benchmark without running it: what bounds a cell (bench/scaling.py's rule), its table, grid and
Scaling section rendered from a recorded result, and the /proc CPU meter on a child process of this test.

The recorded result (bench_scaling_result.json beside this file) is a real `bench/run.py --only scaling`
run, trimmed; speed is never asserted.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench import proc_cpu, report, scaling, scaling_rows
from bench.table import render

RECORDED = Path(__file__).with_name("bench_scaling_result.json")


def fig(machine: float = 0.5, ours: float = 0.4, workers: float = 0.3, broker: float = 0.2, redis: float = 0.2,
        client: float = 0.1, disk_wait: float | None = 0.1) -> dict[str, Any]:
    """A cell's figures with the shares that matter to the rule; `ours` spread over the roles' cores used."""
    return {"machine_busy": machine, "cpus": 2, "cores_used": {"workers": 2 * ours},
            "busiest": {"workers": workers, "broker": broker, "redis": redis, "client": client},
            "redis_disk_wait": disk_wait}


@pytest.mark.parametrize(("figures", "bound"), [
    (fig(machine=0.97, ours=0.9), "cores"),
    (fig(machine=0.97, ours=0.3, workers=0.95), "cores, shared"),  # the machine first: the cell was starved
    (fig(workers=0.93), "worker CPU"),
    (fig(broker=0.9, workers=0.6), "broker CPU"),
    (fig(redis=0.88, workers=0.86), "Redis CPU"),  # the busiest single process names the bound
    (fig(disk_wait=0.7), "Redis fsync"),
    (fig(), "round trips"),
    (fig(disk_wait=None), "round trips"),  # no sample of Redis's state: not a disk bound
])
def test_what_bounds_a_cell_follows_the_documented_rule(figures: dict[str, Any], bound: str) -> None:
    assert scaling.bound_by(figures) == bound
    assert bound in scaling.BOUNDS


def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    return data


def test_recorded_bounds_are_what_the_rule_says_of_their_figures() -> None:
    grid = recorded()["yadtq"]["embedded"]["scaling"]
    cells = [cell for by in grid.values() for cell in by.values()]
    assert len(cells) >= 4
    for cell in cells:
        assert cell["bound_by"] == scaling.bound_by(cell)
        assert cell["cpu_us_per_task"]["all"] == pytest.approx(
            sum(v for k, v in cell["cpu_us_per_task"].items() if k != "all"))


def test_the_bench_table_and_the_grid_show_every_cell_with_its_bound() -> None:
    data = recorded()
    grid = data["yadtq"]["embedded"]["scaling"]
    table = render(data)
    detail = scaling_rows.detail(data)
    for w, by in grid.items():
        for c, cell in by.items():
            shown = f"{cell['end_to_end_per_s']:,.0f} ({cell['bound_by']})"
            assert re.search(rf"scaling {w} x {c}: tasks/s \(bound by\) +{re.escape(shown)}", table), table
            line = next(line for line in detail.splitlines() if line.startswith(f"{w} x {c} "))
            assert f"= {cell['cpu_us_per_task']['all']:,.0f}" in line and cell["bound_by"] in line
    assert "ERROR" not in table + detail


def test_the_report_has_a_scaling_section_with_the_rule_and_what_bounded_each_row() -> None:
    data = recorded()
    page = report.page(RECORDED, data)
    section = page[page.index("\n## Scaling\n"):]
    assert scaling_rows.RULE in section
    assert "| processes x concurrency | tasks/s |" in section
    grid = data["yadtq"]["embedded"]["scaling"]
    for w in grid:
        assert f"{w} process{'es' if w != '1' else ''}: " in section


def test_a_failed_cell_shows_as_an_error_and_the_others_still_print() -> None:
    data = copy.deepcopy(recorded())
    grid = data["yadtq"]["embedded"]["scaling"]
    w = next(iter(grid))
    c = next(iter(grid[w]))
    grid[w][c] = {"error": "Stalled: stuck"}
    table, detail = render(data), scaling_rows.detail(data)
    assert re.search(rf"scaling {w} x {c}: tasks/s \(bound by\) +ERROR", table) and "Stalled: stuck" in table
    assert "Stalled: stuck" in detail
    assert scaling_rows.paragraph(data)  # the other cells are still described


def test_a_run_without_scaling_says_so_in_the_report() -> None:
    data = recorded()
    del data["yadtq"]["embedded"]["scaling"]
    assert "did not measure scaling" in report.scaling_section(data)


def test_the_meter_counts_a_grandchilds_cpu_under_its_role_and_not_the_clients() -> None:
    shell = subprocess.Popen(["sh", "-c", "yes > /dev/null & wait"])  # a spinning grandchild
    grandchild: list[int] = []
    try:
        deadline = time.monotonic() + 60  # a loaded machine gives the grandchild its CPU slowly
        while len(proc_cpu.tree(shell.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        meter = proc_cpu.Meter({"kid": [shell.pid], "client": [os.getpid()]}, disk_wait_pid=shell.pid)
        grandchild = [p for p in meter.pids["kid"] if p != shell.pid]
        assert len(grandchild) == 1
        # The client's tree (this process, and whatever else it started: a test runner starts servers) stops
        # at the other role's root: the child's and the grandchild's CPU are not the client's.
        assert os.getpid() in meter.pids["client"]
        assert not {shell.pid, *grandchild} & set(meter.pids["client"])
        until = meter.start[grandchild[0]] + 0.03  # three clock ticks
        while (proc_cpu.cpu_seconds(grandchild[0]) or 0) < until and time.monotonic() < deadline:
            time.sleep(0.05)
        reading = meter.stop()
    finally:
        for pid in grandchild:
            os.kill(pid, signal.SIGKILL)
        shell.kill()
        shell.wait()
    assert reading.roles["kid"].processes == 2
    assert reading.roles["kid"].cpu_s >= 0.03
    assert reading.roles["kid"].busiest > 0
    assert 0 <= reading.machine_busy <= 1 and reading.disk_wait == 0  # a spinning child never waits on disk

"""The scaling benchmark (bench/scaling.py) in print: rows of the bench table, its detailed grid, and what bounds it.

`add(table)`: a row per worker processes x concurrency in bench/table.py's table, tasks/s and what
bounds the cell, a column per broker. `detail(out)`: per broker, the grid with CPU µs per task by
process type and each one's busiest process, as text or Markdown (run.py prints it under the table,
bench/report.py puts it in docs/benchmarks.md). `paragraph(out)`: what bounds the cells, in words,
from the same figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.scaling import CORES_BUSY, FSYNC_WAIT, ONE_CORE, OURS, ROLES, ours

if TYPE_CHECKING:
    from bench.table import Cell, Figures, Table

KEY = "end_to_end_per_s"
ROLE_HEAD = {"workers": "workers", "broker": "broker", "redis": "Redis", "client": "client"}

RULE = (f"What bounds a cell is computed from its figures, in this order: **cores** when the machine's CPUs "
        f"were at least {CORES_BUSY:.0%} busy and the benchmark's own processes used at least {OURS:.0%} of "
        f"them (**cores, shared** when the rest was other load on the shared machine: that cell is starved); "
        f"else **worker / broker / Redis / client CPU** when the busiest single process of that type used at "
        f"least {ONE_CORE:.0%} of one core; else **Redis fsync** when Redis was seen waiting on its disk at "
        f"least {FSYNC_WAIT:.0%} of the time; else **round trips**: too few tasks in flight for any process "
        f"to be busy, so each task's round trips set the pace.")


def grid(y: Figures) -> dict[str, dict[str, Any]]:
    g: Any = y.get("scaling", {})
    return g if isinstance(g, dict) else {}


def cells(out: dict[str, Any]) -> list[tuple[int, int]]:
    """(processes, concurrency) of every cell measured on any broker, in order."""
    found = {(int(w), int(c)) for y in out.get("yadtq", {}).values()
             for w, by in grid(y).items() if w != "error" for c in by}
    return sorted(found)


def add(table: Table) -> None:
    from bench.table import ERROR_CELL
    for w, c in cells(table.out):
        def one(y: Figures, w: int = w, c: int = c) -> Cell | None:
            g = grid(y)
            fig = g.get(str(w), {}).get(str(c)) if "error" not in g else g
            if fig is None:
                return None
            if "error" in fig:
                return ERROR_CELL
            return f"{fig[KEY]:,.0f} ({fig['bound_by']}{serving(fig, w)})", "", ""

        table._add(f"scaling {w} x {c}: tasks/s (bound by)", one,
                   loads=[grid(y).get(str(w), {}).get(str(c)) for y in table.ys.values()])


def serving(fig: dict[str, Any], w: int) -> str:
    n = fig.get("workers_serving", w)
    return "" if n == w else f", only {n} serving"


HEAD = ["processes x concurrency", "tasks/s",
        "CPU µs/task: " + ", ".join(ROLE_HEAD[r] for r in ROLES) + " = all",
        "busiest process, % of a core: " + ", ".join(ROLE_HEAD[r] for r in ROLES),
        "Redis disk wait", "machine busy (ours)", "bound by", "load"]


def _line(w: int, c: int, fig: dict[str, Any]) -> list[str]:
    if "error" in fig:
        return [f"{w} x {c}", "ERROR", "", "", "", "", fig["error"][:60], ""]
    cpu, busiest = fig["cpu_us_per_task"], fig["busiest"]
    wait = fig.get("redis_disk_wait")
    return [f"{w} x {c}", f"{fig[KEY]:,.0f}",
            ", ".join(f"{cpu.get(r, 0):,.0f}" for r in ROLES) + f" = {cpu['all']:,.0f}",
            ", ".join(f"{100 * busiest.get(r, 0):.0f}" for r in ROLES), "" if wait is None else f"{wait:.0%}",
            f"{fig['machine_busy']:.0%} ({ours(fig):.0%})", fig["bound_by"] + serving(fig, w), f"{fig['load']:.1f}"]


def detail(out: dict[str, Any], markdown: bool = False) -> str:
    """The grid of every broker measured, with its header; "" when no scaling was measured."""
    text: list[str] = []
    for broker, y in out.get("yadtq", {}).items():
        g = grid(y)
        if not g:
            continue
        title = f"Scaling on the {broker} broker: `add` end to end, one run per cell"
        if "error" in g:
            text += ["", f"{title}: ERROR {g['error']}"]
            continue
        lines = [_line(w, c, g[str(w)][str(c)]) for w, c in cells(out) if str(c) in g.get(str(w), {})]
        if markdown:
            text += ["", f"**{title}**", "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
            text += ["| " + " | ".join(line) + " |" for line in lines]
        else:
            widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(HEAD)]
            text += ["", title, "  ".join(h.ljust(n) for h, n in zip(HEAD, widths, strict=True)).rstrip()]
            text += ["  ".join(v.ljust(n) for v, n in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(text).lstrip("\n")


def paragraph(out: dict[str, Any]) -> str:
    """What bounded each row of processes, per broker, in words (from the figures, as the table says)."""
    said: list[str] = []
    for broker, y in out.get("yadtq", {}).items():
        g = grid(y)
        if not g or "error" in g:
            continue
        rows = []
        for w in sorted(int(k) for k in g):
            by = {int(c): f for c, f in g[str(w)].items() if "error" not in f}
            if not by:
                continue
            best = max(by, key=lambda c: by[c][KEY])
            runs = _runs([(c, by[c]["bound_by"]) for c in sorted(by)])
            rows.append(f"{w} process{'es' if w > 1 else ''}: {runs}; best {by[best][KEY]:,.0f} tasks/s at "
                        f"concurrency {best}")
        if rows:
            said.append(f"On the {broker} broker, " + "; ".join(rows) + ".")
    return "\n\n".join(said)


def _runs(bounds: list[tuple[int, str]]) -> str:
    """'round trips at concurrency 1, worker CPU at 4 to 64': consecutive cells with one bound, grouped."""
    groups: list[tuple[str, list[int]]] = []
    for c, bound in bounds:
        if groups and groups[-1][0] == bound:
            groups[-1][1].append(c)
        else:
            groups.append((bound, [c]))
    return ", ".join(f"{bound} at {'concurrency ' if i == 0 else ''}{_span(cs)}"
                     for i, (bound, cs) in enumerate(groups))


def _span(values: list[int]) -> str:
    if len(values) <= 2:
        return " and ".join(map(str, values))
    return f"{values[0]} to {values[-1]}"

"""`make bench`: every benchmark in one run, one table with figures, ratios and targets, JSON in bench/results/.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--runs N] [--broker NAME ...] [--no-celery]
    .venv/bin/python bench/run.py --show bench/results/latest.json [--markdown]

Each benchmark starts its own private broker and Redis. YADTQ is measured on
each --broker (a column each); Celery runs in the same invocation, so ratios
are measured on the same (shared, noisy) machine at the same time. Repeated
figures are medians of --runs runs with min and max; the mixed workload runs
once per setup (it is the long one). Every figure carries the 1-minute load
average seen when it was taken. Targets are printed as met or not, never
asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from bench import common, mixed, scale, yadtq_bench
from bench.common import repeat, save, summarize

NAMES = ("mixed", "scale", "latency", "transport", "failover", "memory", "dashboard")


@dataclass(frozen=True)
class Sizes:
    mixed_tasks: int
    mixed_setups: dict[int, list[tuple[int, int]]]
    scale_tasks: int
    scale_workers: tuple[int, ...]
    celery_scale_tasks: int
    transport: int
    latency: int
    memory: int
    dashboard: tuple[int, ...]


FULL = Sizes(1000, mixed.YADTQ_SETUPS, 20_000, (1, 2, 4), 2_000, 20_000, 1000, 100_000, (100_000, 1_000_000))
QUICK = Sizes(100, {2: [(1, 2)]}, 1000, (1, 2), 300, 2000, 100, 5000, (2_000, 20_000))
RATE = 100.0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    runs = 1 if args.quick else args.runs
    took: dict[str, float] = {}
    out: dict[str, Any] = {"quick": args.quick, "runs": runs, "brokers": args.broker, "mixed_tasks": sizes.mixed_tasks,
                           "load_at_start": common.load(), "cpus": os.cpu_count(), "yadtq": {}, "celery": {},
                           "section_s": took}
    only = set(args.only)

    def timed(name: str, fn: Callable[..., Any], *fargs: Any, **kwargs: Any) -> Any:
        """`fn`'s result; its wall time goes to the results too (the whole run has a budget)."""
        t = time.time()
        result = fn(*fargs, **kwargs)
        took[name] = round(time.time() - t, 1)
        print(f"  [{name}: {took[name]:.0f} s, load {common.load():.1f}]", flush=True)
        return result

    t0 = time.time()
    for broker in args.broker:
        common.use_broker(broker)
        y: dict[str, Any] = out["yadtq"].setdefault(broker, {})
        print(f"YADTQ on the {broker} broker", flush=True)
        if "mixed" in only:
            y["mixed"] = timed(f"mixed {broker}", mixed.run, sizes.mixed_tasks, list(sizes.mixed_setups),
                               celery=False, setups=sizes.mixed_setups)
        if "scale" in only:
            y["scale"] = timed(f"scale {broker}", scale.yadtq_run, sizes.scale_tasks, sizes.scale_workers, runs)
        if "latency" in only:
            y["latency"] = timed(f"latency {broker}", repeat, runs, yadtq_bench.latency, sizes.latency, RATE)
        if "transport" in only:
            y["transport"] = timed(f"transport {broker}", repeat, runs, yadtq_bench.transport, sizes.transport)
            y["transport_latency"] = timed(f"transport latency {broker}", repeat, runs,
                                           yadtq_bench.transport_latency, sizes.latency, RATE)
        if "failover" in only:
            y["failover"] = timed(f"failover {broker}", repeat, 1, yadtq_bench.failover)
        if "memory" in only:
            y["memory"] = timed(f"memory {broker}", repeat, 1, yadtq_bench.memory, sizes.memory)
    common.use_broker(args.broker[0])
    if "dashboard" in only:  # Redis only: no broker dimension
        from bench import dashboard_refresh
        refresh = timed("dashboard", dashboard_refresh.main, sizes.dashboard)
        out["dashboard"] = {k: summarize([v]) for k, v in refresh.items()}
    if not args.no_celery and only & {"mixed", "scale", "latency"}:
        from bench import celery_bench
        print("Celery 5 (Redis broker and backend, acks_late)", flush=True)
        rig = celery_bench.CeleryRig()
        c: dict[str, Any] = out["celery"]
        try:
            if "mixed" in only:
                c["mixed"] = timed("mixed Celery", mixed.run, sizes.mixed_tasks, list(sizes.mixed_setups),
                                   yadtq=False, rig=rig)
            if "scale" in only:
                c["scale"] = timed("scale Celery", scale.celery_run, rig, sizes.celery_scale_tasks,
                                   sizes.scale_workers, runs)
            if "latency" in only:
                c["latency"] = timed("latency Celery", repeat, runs, celery_bench.latency, rig, sizes.latency, RATE)
            gc.collect()  # Celery's result objects talk to Redis when collected: before it stops
        finally:
            rig.close()
    out["load_at_end"] = common.load()
    out["wall_s"] = round(time.time() - t0, 1)
    return out


# --- the table ------------------------------------------------------------------------------------

def med(cell: Any, key: str) -> float | None:
    """A figure's median from a summary ({"median": ...}) or a single run's value."""
    if not isinstance(cell, dict) or key not in cell:
        return None
    v = cell[key]
    return float(v["median"] if isinstance(v, dict) else v)


def spread(cell: Any, key: str, fmt: str) -> str:
    v = cell.get(key) if isinstance(cell, dict) else None
    if isinstance(v, dict) and v.get("runs", 1) > 1:
        return f" ({fmt.format(v['min'])}..{fmt.format(v['max'])})"
    return ""


@dataclass
class Row:
    label: str
    cells: dict[str, str] = field(default_factory=dict)  # column -> text
    ratio: str = ""
    target: str = ""
    met: str = ""
    load: str = ""


def _load_text(*cells: Any) -> str:
    loads = [med(c, "load") for c in cells]
    return " / ".join(f"{v:.1f}" for v in loads if v is not None)


def _verdicts(checks: list[tuple[str, bool]]) -> str:
    """'yes', or 'NO: what was missed'."""
    missed = [name for name, ok in checks if not ok]
    return "yes" if not missed else "NO: " + ", ".join(missed)


def rows(out: dict[str, Any]) -> tuple[list[str], list[Row]]:
    brokers: list[str] = list(out.get("yadtq", {}))
    cols = [f"YADTQ {b}" for b in brokers] + (["Celery"] if out.get("celery") else [])
    ys = {f"YADTQ {b}": out["yadtq"][b] for b in brokers}
    cel = out.get("celery", {})
    table: list[Row] = []

    def section(title: str) -> None:
        table.append(Row(f"== {title}"))

    def per_broker(fn: Callable[[str, dict[str, Any]], tuple[str, str, str] | None]) -> tuple[dict[str, str], str, str]:
        """Cells, ratios and verdicts of every YADTQ column (verdicts prefixed with the broker if several)."""
        cells, ratios, mets = {}, [], []
        for col, y in ys.items():
            got = fn(col, y)
            if got is None:
                continue
            cells[col], r, m = got
            if r:
                ratios.append(r)
            if m:
                mets.append(m if len(ys) == 1 else f"{col.split()[1]}: {m}")
        return cells, " / ".join(ratios), "; ".join(mets)

    # Mixed workload.
    setups = list(dict.fromkeys((slots, setup) for y in ys.values()  # in the order they ran
                                for slots, by in y.get("mixed", {}).items() for setup in by))
    if setups:
        section(f"Mixed workload, {out.get('mixed_tasks', 0):,} tasks: makespan (first submit to last success) "
                "and ideal in s; quick tasks' submit-to-success p50 / p99 in s; one run each")
    for slots, setup in setups:
        celery_setup = next(iter(cel.get("mixed", {}).get(slots, {}).items()), None)
        c_fig = celery_setup[1] if celery_setup else None
        c_name = celery_setup[0] if celery_setup else "Celery"

        def makespan(col: str, y: dict[str, Any], slots: str = slots, setup: str = setup,
                     c_fig: Any = c_fig) -> tuple[str, str, str] | None:
            fig = y.get("mixed", {}).get(slots, {}).get(setup)
            if fig is None:
                return None
            checks = [("<= 1.2x ideal", fig["makespan_s"] <= 1.2 * fig["ideal_s"])]
            ratio = ""
            if c_fig:
                checks.append(("< Celery", fig["makespan_s"] < c_fig["makespan_s"]))
                ratio = f"{fig['makespan_s'] / c_fig['makespan_s']:.2f}x"
            serving = fig.get("workers_serving")
            note = "" if serving in (None, int(setup.split()[1].split("x")[0])) else f", {serving} serving"
            return (f"{fig['makespan_s']:.1f} ({fig['vs_ideal']:.2f}x ideal {fig['ideal_s']:.1f}{note})",
                    ratio, _verdicts(checks))

        cells, ratio, met = per_broker(makespan)
        if c_fig:
            cells["Celery"] = f"{c_fig['makespan_s']:.1f} ({c_fig['vs_ideal']:.2f}x, {c_name.split(' ', 1)[1]})"
        y_figs = [y.get("mixed", {}).get(slots, {}).get(setup) for y in ys.values()]
        table.append(Row(f"mixed {slots}: makespan, {setup}", cells, ratio,
                         "<= 1.2x ideal, < Celery", met, _load_text(*y_figs, c_fig)))

        def quick(col: str, y: dict[str, Any], slots: str = slots, setup: str = setup,
                  c_fig: Any = c_fig) -> tuple[str, str, str] | None:
            fig = y.get("mixed", {}).get(slots, {}).get(setup)
            if fig is None:
                return None
            if not c_fig:
                return f"{fig['quick_p50_s']:.2f} / {fig['quick_p99_s']:.2f}", "", ""
            return (f"{fig['quick_p50_s']:.2f} / {fig['quick_p99_s']:.2f}",
                    f"{fig['quick_p99_s'] / c_fig['quick_p99_s']:.2f}x",
                    _verdicts([("p99 < Celery", fig["quick_p99_s"] < c_fig["quick_p99_s"])]))

        cells, ratio, met = per_broker(quick)
        if c_fig:
            cells["Celery"] = f"{c_fig['quick_p50_s']:.2f} / {c_fig['quick_p99_s']:.2f}"
        table.append(Row(f"mixed {slots}: quick p50 / p99, {setup}", cells, ratio, "p99 < Celery", met))

    # Scale.
    workers = sorted({int(w) for y in ys.values() for w in y.get("scale", {})} | {int(w) for w in cel.get("scale", {})})
    if workers:
        section("Scale: `add` end to end, tasks/s (YADTQ worker processes; Celery prefork concurrency)")
    for w in workers:
        c_cell = cel.get("scale", {}).get(str(w))
        c_val = med(c_cell, "end_to_end_per_s")

        def tput(col: str, y: dict[str, Any], w: int = w, c_val: float | None = c_val) -> tuple[str, str, str] | None:
            cell = y.get("scale", {}).get(str(w))
            v = med(cell, "end_to_end_per_s")
            if v is None:
                return None
            serving = med(cell, "workers_serving")
            note = "" if serving in (None, w) else f", {serving:.0f} serving"
            met = _verdicts([(">= 5,000/s", v >= 5000)]) if w == 2 else ""
            return (f"{v:,.0f}{spread(cell, 'end_to_end_per_s', '{:,.0f}')}{note}",
                    f"{v / c_val:.1f}x" if c_val else "", met)

        cells, ratio, met = per_broker(tput)
        if c_val is not None:
            cells["Celery"] = f"{c_val:,.0f}{spread(c_cell, 'end_to_end_per_s', '{:,.0f}')}"
        y_cells = [y.get("scale", {}).get(str(w)) for y in ys.values()]
        table.append(Row(f"add end to end, {w} worker{'s' if w > 1 else ''}", cells, ratio,
                         ">= 5,000/s (was ~4,600)" if w == 2 else "", met, _load_text(*y_cells, c_cell)))

    # No regression.
    section("No regression and the rest (medians, min..max)")
    before = len(table)

    def simple(label: str, bench: str, key: str, unit: str, fmt: str, celery: bool = False,
               target: str = "", ok: Callable[[float], bool] | None = None, ratio: bool = False) -> None:
        c_cell = cel.get(bench) if celery else None
        c_val = med(c_cell, key)

        def one(col: str, y: dict[str, Any]) -> tuple[str, str, str] | None:
            v = med(y.get(bench), key)
            if v is None:
                return None
            return (f"{fmt.format(v)} {unit}{spread(y[bench], key, fmt)}",
                    f"{v / c_val:.1f}x" if ratio and c_val else "",
                    _verdicts([(target, ok(v))]) if ok else "")

        cells, r, met = per_broker(one)
        if c_val is not None:
            cells["Celery"] = f"{fmt.format(c_val)} {unit}{spread(c_cell, key, fmt)}"
        if cells:
            table.append(Row(label, cells, r, target, met,
                             _load_text(*[y.get(bench) for y in ys.values()], c_cell)))

    for q in ("p50", "p95", "p99"):
        simple(f"latency {q} at 100 tasks/s", "latency", f"{q}_ms", "ms", "{:.1f}", celery=True, ratio=True,
               target="< 20 ms" if q == "p99" else "", ok=(lambda v: v < 20) if q == "p99" else None)
    for q in ("p50", "p99"):
        simple(f"Kafka alone: latency {q} at 100/s", "transport_latency", f"{q}_ms", "ms", "{:.1f}")
    simple("Kafka alone: produce", "transport", "produce_per_s", "msg/s", "{:,.0f}")
    simple("Kafka alone: consume", "transport", "consume_per_s", "msg/s", "{:,.0f}")
    simple("Kafka alone: ceiling (produce then consume)", "transport", "ceiling_per_s", "msg/s", "{:,.0f}")
    simple("failover after kill -9", "failover", "failover_s", "s", "{:.1f}")
    simple("Redis memory per finished task", "memory", "bytes_per_task", "B", "{:,.0f}",
           target="< 1 KB", ok=lambda v: v < 1024)
    for key in sorted(out.get("dashboard", {}), key=lambda k: int(k.rsplit("_", 1)[1])):
        v = out["dashboard"][key]["median"]
        table.append(Row(f"dashboard refresh, {int(key.rsplit('_', 1)[1]):,} records",
                         {cols[0]: f"{v:.1f} ms"} if cols else {}, target="< 300 ms",
                         met=_verdicts([("< 300 ms", v < 300)])))
    if len(table) == before:
        table.pop()  # the section's title, with nothing under it
    return cols, table


def print_table(out: dict[str, Any], markdown: bool = False) -> None:
    cols, table = rows(out)
    head = ["benchmark", *cols, "YADTQ/Celery", "target", "met", "load"]
    lines = [[r.label, *(r.cells.get(c, "") for c in cols), r.ratio, r.target, r.met, r.load] for r in table]
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            if line[0].startswith("== "):
                print(f"| **{line[0][3:]}** |" + " |" * (len(head) - 1))
            else:
                print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines if not line[0].startswith("== ")))
                  for i, h in enumerate(head)]
        print("\n" + "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
        for line in lines:
            if line[0].startswith("== "):
                print(f"\n{line[0][3:]}")
            else:
                print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    print(f"\n(load = 1-minute load average on {out.get('cpus', '?')} CPUs after the YADTQ / Celery runs; "
          f"whole run {out.get('wall_s', '?')} s, load {out.get('load_at_start', '?')} at start, "
          f"{out.get('load_at_end', '?')} at end)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one run each (the smoke test)")
    p.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--broker", nargs="+", choices=list(common.BROKERS), default=["embedded"],
                   help="brokers YADTQ is measured on, a column each (default: embedded)")
    p.add_argument("--no-celery", action="store_true", help="YADTQ only")
    p.add_argument("--show", type=Path, metavar="JSON", help="print the table of a saved result, run nothing")
    p.add_argument("--markdown", action="store_true", help="the table as Markdown (for the README)")
    p.add_argument("--out", type=Path, metavar="JSON",
                   help="where the results go (default bench/results/latest.json, or quick.json with --quick)")
    args = p.parse_args(argv)
    if args.show:
        out: dict[str, Any] = json.loads(args.show.read_text())
    else:
        out = measure(args)
        path = save("quick" if args.quick else "latest", out, args.out)
        print(f"wrote {path}")
    print_table(out, args.markdown)
    return out


if __name__ == "__main__":
    main()

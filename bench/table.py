"""The one table of `make bench`: rows of figures, a column per YADTQ broker, Celery and a peer, ratio, target,
met, load.

Built from the results dict that bench/run.py saves as JSON, so a saved run
prints again (`run.py --show FILE [--markdown]`). Targets are judged here and
printed; nothing is asserted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench import peer_rows, scaling_rows
from bench.peer_rows import PEER

Figures = dict[str, Any]
# A YADTQ column's cell: its text, its ratio to Celery or the peer, whether it met the target ("" when no target).
Cell = tuple[str, str, str]


def med(cell: Any, key: str) -> float | None:
    """A figure's median from a summary ({"median": ...}) or a single run's value."""
    if not isinstance(cell, dict) or key not in cell:
        return None
    v = cell[key]
    return float(v["median"] if isinstance(v, dict) else v)


def spread(cell: Any, key: str, fmt: str) -> str:
    """' (min..max)' of a summary of several runs, else ''."""
    v = cell.get(key) if isinstance(cell, dict) else None
    if isinstance(v, dict) and v.get("runs", 1) > 1:
        return f" ({fmt.format(v['min'])}..{fmt.format(v['max'])})"
    return ""


def errors(out: Any, path: str = "") -> list[str]:
    """'where: message' of every part of a results dict that failed ({"error": ...} anywhere in it)."""
    if not isinstance(out, dict):
        return []
    if isinstance(out.get("error"), str):
        return [f"{path or 'run'}: {out['error']}"]
    return [e for k, v in out.items() for e in errors(v, f"{path} / {k}" if path else str(k))]


ERROR_CELL: Cell = ("ERROR (see below)", "", "NO: failed")


def verdict(checks: Iterable[tuple[str, bool]]) -> str:
    """'yes', or 'NO: what was missed'."""
    missed = [name for name, ok in checks if not ok]
    return "yes" if not missed else "NO: " + ", ".join(missed)


@dataclass
class Row:
    label: str
    cells: dict[str, str] = field(default_factory=dict)  # column -> text
    ratio: str = ""
    target: str = ""
    met: str = ""
    load: str = ""
    title: bool = False  # a section's title, no figures


class Table:
    def __init__(self, out: dict[str, Any]) -> None:
        self.out = out
        self.ys: dict[str, Figures] = {f"YADTQ {b}": figs for b, figs in out.get("yadtq", {}).items()}
        self.celery: Figures = out.get("celery", {})
        self.peers: Figures = out.get("peers", {})
        self.columns = [*self.ys, *(["Celery"] if self.celery else []), *([PEER] if self.peers else [])]
        self.rows: list[Row] = []
        self._mixed()
        self._scale()
        self._section(f"Peers: `add` end to end, {peer_rows.WORKERS} worker processes, tasks/s, each on the same "
                      "Redis settings as YADTQ (medians, min..max)", lambda: peer_rows.add(self))
        self._section("Scaling: `add` end to end, worker processes x concurrency, tasks/s (what bounds it: "
                      "see the grid under the table)", lambda: scaling_rows.add(self))
        self._section("Redis Cluster: one Redis, then 3 primaries on this same host (16 shards), tasks/s "
                      "(medians, min..max of rounds taken in turn)", self._cluster_rows)
        self._rest()

    # --- building blocks ---

    def _section(self, title: str, build: Callable[[], None]) -> None:
        """A titled group of rows; the title is dropped when nothing was measured under it."""
        at = len(self.rows)
        self.rows.append(Row(title, title=True))
        build()
        if len(self.rows) == at + 1:
            self.rows.pop()

    def _add(self, label: str, cell: Callable[[Figures], Cell | None], celery: str | None = None,
             target: str = "", loads: Iterable[Any] = (), column: str = "Celery") -> None:
        """One row: `cell(figures of a YADTQ column)` per YADTQ column, `celery` in `column` (Celery's, or
        PEER's); verdicts prefixed with the broker when there are several; `loads` are the figures whose
        load averages go in the row."""
        cells: dict[str, str] = {}
        ratios, mets = [], []
        for col, y in self.ys.items():
            got = cell(y)
            if got is None:
                continue
            cells[col], ratio, met = got
            if ratio:
                ratios.append(ratio)
            if met:
                mets.append(met if len(self.ys) == 1 else f"{col.split()[1]}: {met}")
        if celery is not None:
            cells[column] = celery
        if cells:
            load = " / ".join(f"{v:.1f}" for v in (med(c, "load") for c in loads) if v is not None)
            self.rows.append(Row(label, cells, " / ".join(ratios), target, "; ".join(mets), load))

    # --- sections ---

    def _mixed(self) -> None:
        setups = list(dict.fromkeys((slots, setup) for y in self.ys.values()  # in the order they ran
                                    for slots, by in y.get("mixed", {}).items() for setup in by))

        def build() -> None:
            for slots, setup in setups:
                self._mixed_setup(slots, setup)
        self._section(f"Mixed workload, {self.out.get('mixed_tasks', 0):,} tasks: makespan (first submit to last "
                      "success) and ideal in s; quick tasks' submit-to-success p50 / p99 in s; one run each", build)

    def _mixed_setup(self, slots: str, setup: str) -> None:
        c_name, c_fig = next(iter(self.celery.get("mixed", {}).get(slots, {}).items()), ("", None))
        c_failed = bool(c_fig and "error" in c_fig)
        if c_failed:
            c_fig = None
        processes = int(setup.split()[1].split("x")[0])

        def fig_of(y: Figures) -> Figures | None:
            fig: Figures | None = y.get("mixed", {}).get(slots, {}).get(setup)
            return fig

        def makespan(y: Figures) -> Cell | None:
            fig = fig_of(y)
            if fig is None or "error" in fig:
                return None if fig is None else ERROR_CELL
            checks = [("<= 1.2x ideal", fig["makespan_s"] <= 1.2 * fig["ideal_s"])]
            if c_fig:
                checks.append(("< Celery", fig["makespan_s"] < c_fig["makespan_s"]))
            elif c_failed:
                checks.append(("Celery not measured", False))
            serving = fig.get("workers_serving", processes)
            note = "" if serving == processes else f", only {serving} serving"
            return (f"{fig['makespan_s']:.1f} ({fig['vs_ideal']:.2f}x ideal {fig['ideal_s']:.1f}{note})",
                    f"{fig['makespan_s'] / c_fig['makespan_s']:.2f}x" if c_fig else "", verdict(checks))

        def quick(y: Figures) -> Cell | None:
            fig = fig_of(y)
            if fig is None or "error" in fig:
                return None if fig is None else ERROR_CELL
            text = f"{fig['quick_p50_s']:.2f} / {fig['quick_p99_s']:.2f}"
            if not c_fig:
                return text, "", verdict([("Celery not measured", False)]) if c_failed else ""
            return (text, f"{fig['quick_p99_s'] / c_fig['quick_p99_s']:.2f}x",
                    verdict([("p99 < Celery", fig["quick_p99_s"] < c_fig["quick_p99_s"])]))

        failed = ERROR_CELL[0] if c_failed else None
        pool = c_name.split(" ", 1)[-1]
        self._add(f"mixed {slots}: makespan, {setup}", makespan,
                  f"{c_fig['makespan_s']:.1f} ({c_fig['vs_ideal']:.2f}x, {pool})" if c_fig else failed,
                  "<= 1.2x ideal, < Celery", [*(fig_of(y) for y in self.ys.values()), c_fig])
        self._add(f"mixed {slots}: quick p50 / p99, {setup}", quick,
                  f"{c_fig['quick_p50_s']:.2f} / {c_fig['quick_p99_s']:.2f}" if c_fig else failed, "p99 < Celery")

        def retry(fig: Figures | None) -> str | None:
            if not fig or "retry_wait_p50_s" not in fig:
                return None
            return f"{fig['retry_wait_p50_s']:.1f} / {fig['retry_wait_max_s']:.1f}"

        def retry_cell(y: Figures) -> Cell | None:
            text = retry(fig_of(y))
            return None if text is None else (text, "", "")
        self._add(f"mixed {slots}: failure to retried success p50 / max, {setup}", retry_cell, retry(c_fig),
                  "about 1 s")

    def _scale(self) -> None:
        workers = sorted({int(w) for y in self.ys.values() for w in y.get("scale", {})}
                         | {int(w) for w in self.celery.get("scale", {})})

        def build() -> None:
            for w in workers:
                self._scale_row(w)
        self._section("Scale: `add` end to end, tasks/s (YADTQ worker processes; Celery prefork concurrency)", build)

    def _scale_row(self, w: int) -> None:
        key = "end_to_end_per_s"
        c_cell = self.celery.get("scale", {}).get(str(w))
        c_val = med(c_cell, key)

        def tput(y: Figures) -> Cell | None:
            cell = y.get("scale", {}).get(str(w))
            if isinstance(cell, dict) and "error" in cell:
                return ERROR_CELL
            v = med(cell, key)
            if v is None:
                return None
            serving = med(cell, "workers_serving")
            note = "" if serving in (None, w) else f", {serving:.0f} serving"
            return (f"{v:,.0f}{spread(cell, key, '{:,.0f}')}{note}", f"{v / c_val:.1f}x" if c_val else "",
                    verdict([(">= 5,000/s", v >= 5000)]) if w == 2 else "")

        c_text = ERROR_CELL[0] if isinstance(c_cell, dict) and "error" in c_cell else None
        self._add(f"add end to end, {w} worker{'s' if w > 1 else ''}", tput,
                  c_text if c_val is None else f"{c_val:,.0f}{spread(c_cell, key, '{:,.0f}')}",
                  ">= 5,000/s (was ~4,600)" if w == 2 else "",
                  [*(y.get("scale", {}).get(str(w)) for y in self.ys.values()), c_cell])

    def _rest(self) -> None:
        self._section("No regression and the rest (medians, min..max)", self._rest_rows)

    def _simple(self, label: str, bench: str, key: str, unit: str, fmt: str, celery: bool = False,
                target: str = "", ok: Callable[[float], bool] | None = None) -> None:
        """A figure per YADTQ column, with Celery's and the ratio when `celery`."""
        c_cell = self.celery.get(bench) if celery else None
        c_val = med(c_cell, key)

        def one(y: Figures) -> Cell | None:
            if isinstance(y.get(bench), dict) and "error" in y[bench]:
                return ERROR_CELL
            v = med(y.get(bench), key)
            if v is None:
                return None
            return (f"{fmt.format(v)} {unit}{spread(y[bench], key, fmt)}", f"{v / c_val:.1f}x" if c_val else "",
                    verdict([(target, ok(v))]) if ok else "")

        self._add(label, one, None if c_val is None else f"{fmt.format(c_val)} {unit}{spread(c_cell, key, fmt)}",
                  target, [*(y.get(bench) for y in self.ys.values()), c_cell])

    def _failover_rows(self) -> None:
        """bench/failover.py: one of 2 workers stopped under a trickle; session timeout 6 s (default)."""
        self._simple("failover after kill -9 (other worker serves)", "failover", "kill_failover_s", "s", "{:.1f}",
                     target="<= 7 s", ok=lambda v: v <= 7.0)  # the session timeout + 1 s
        self._simple("failover after a clean stop (other worker serves)", "failover", "clean_failover_s", "s",
                     "{:.1f}", target="< 1 s", ok=lambda v: v < 1.0)
        self._simple("kill -9 and restart at once: its partitions serve again", "failover", "bounce_s", "s", "{:.1f}")
        self._simple("kill -9 and restart at once: other worker's rebalances", "failover",
                     "bounce_survivor_revokes", "", "{:.0f}")
        self._simple("restarted after kill -9: serves again (incl. process start)", "failover", "kill_rejoin_s",
                     "s", "{:.1f}")
        self._simple("restarted after a clean stop: serves again (incl. process start)", "failover",
                     "clean_rejoin_s", "s", "{:.1f}")

    def _rest_rows(self) -> None:
        for q in ("p50", "p95", "p99"):
            self._simple(f"latency {q} at 100 tasks/s", "latency", f"{q}_ms", "ms", "{:.1f}", celery=True,
                         target="< 20 ms" if q == "p99" else "", ok=(lambda v: v < 20) if q == "p99" else None)
        for q in ("p50", "p99"):  # where the time goes (bench/yadtq_bench.py `latency`)
            self._simple(f"  of which submit (record + publish acked) {q}", "latency", f"submit_{q}_ms", "ms",
                         "{:.1f}", celery=True)
            self._simple(f"  of which submit returned to claimed {q}", "latency", f"pickup_{q}_ms", "ms", "{:.1f}")
            self._simple(f"  of which claimed to outcome stored {q}", "latency", f"store_{q}_ms", "ms", "{:.1f}")
        for q in ("p50", "p99"):
            self._simple(f"Kafka alone: latency {q} at 100/s", "transport_latency", f"{q}_ms", "ms", "{:.1f}")
        self._simple("Kafka alone: produce", "transport", "produce_per_s", "msg/s", "{:,.0f}")
        self._simple("Kafka alone: consume", "transport", "consume_per_s", "msg/s", "{:,.0f}")
        self._simple("Kafka alone: ceiling (produce then consume)", "transport", "ceiling_per_s", "msg/s", "{:,.0f}")
        self._failover_rows()
        self._simple("workflows: chord callback start after its last member", "workflows", "chord_callback_ms",
                     "ms", "{:.1f}")
        for q in ("p50", "p99"):
            self._simple(f"workflows: chain step overhead {q}", "workflows", f"chain_step_{q}_ms", "ms", "{:.1f}")
        self._simple("start: `make run` to the first `submit --wait` done", "start", "first_task_s", "s", "{:.1f}",
                     target="< 5 s", ok=lambda v: v < 5)
        self._simple("start: workers joined the group", "start", "joined_s", "s", "{:.1f}")
        self._simple("start: CPU seconds of the stack until then", "start", "cpu_s", "s", "{:.1f}")
        self._simple("CPU per `add` task, every process (2 workers)", "cpu", "total_us", "µs", "{:,.0f}")
        for group in ("client", "workers", "broker", "redis"):
            self._simple(f"  of which {group}", "cpu", f"{group}_us", "µs", "{:,.0f}")
        self._simple("Redis memory per finished task", "memory", "bytes_per_task", "B", "{:,.0f}",
                     target="≤ 500 B", ok=lambda v: v <= 500)
        self._limits_rows()
        for q in ("p50", "p99"):
            self._simple(f"delayed: lateness {q}, all due in one second", "delayed", f"released_{q}_ms", "ms",
                         "{:,.0f}", target="< 1 s" if q == "p99" else "",
                         ok=(lambda v: v < 1000) if q == "p99" else None)
        self._simple("delayed: start lateness p99 (runs the burst)", "delayed", "start_p99_ms", "ms", "{:,.0f}")
        self._simple("delayed: Redis memory per waiting task", "delayed", "bytes_per_waiting_task", "B", "{:,.0f}",
                     target="< 1 KB", ok=lambda v: v < 1024)
        dashboard = self.out.get("dashboard", {})
        for key in sorted((k for k in dashboard if k != "error"), key=lambda k: int(k.rsplit("_", 1)[1])):
            v = dashboard[key]["median"]
            # Redis only, no broker: shown under the first column.
            self.rows.append(Row(f"dashboard refresh, {int(key.rsplit('_', 1)[1]):,} records",
                                 {self.columns[0]: f"{v:.1f} ms"} if self.columns else {}, target="< 300 ms",
                                 met=verdict([("< 300 ms", v < 300)])))
        wake = self.out.get("wakeup", {})
        for q in ("p50", "p99") if "pushed_p50_ms" in wake else ():
            pushed, polled = wake[f"pushed_{q}_ms"], wake[f"polled_{q}_ms"]
            target = "< 5 ms" if q == "p99" else ""
            # The client's own part: from the worker's step returning (after Redis's fsync) to return.
            client = wake.get(f"pushed_after_reply_{q}_ms")
            extra = "" if client is None else f"; {client:.1f} ms after the step's reply; load {wake.get('load_1min')}"
            # Redis only, no broker: shown under the first column, beside the polling it replaced.
            self.rows.append(Row(f"result() wake-up latency {q} (outcome stored to return)",
                                 {self.columns[0]: f"{pushed:.1f} ms (polling: {polled:.0f} ms{extra})"} if self.columns
                                 else {}, target=target,
                                 met=verdict([(target, pushed < 5)]) if target else ""))


    def _limits_rows(self) -> None:
        """The limits benchmark (bench/limits_bench.py): a 20/s limit saturated, one run."""
        self._simple("rate limit 20/s saturated: achieved", "limits", "rate_achieved_per_s", "/s", "{:.1f}",
                     target="20 ± 5%", ok=lambda v: 19 <= v <= 21)
        self._simple("rate limit 20/s: most starts in any 1 s (2 workers)", "limits", "most_in_1s", "", "{:.0f}",
                     target="<= 22", ok=lambda v: v <= 22)
        self._simple("unlimited throughput beside a saturated limit, ratio to none", "limits", "unlimited_ratio",
                     "", "{:.2f}", target=">= 0.9", ok=lambda v: v >= 0.9)


    def _cluster_rows(self) -> None:
        """bench/redis_cluster_bench.py: one Redis and a 3-primary cluster on this machine, round by round."""
        for what, label in (("end_to_end", "`add` end to end, 2 workers"),
                            ("store", "store alone (submit + claim + outcome, no broker)")):
            for setup, on in (("one", "one Redis"), ("cluster", "Redis Cluster")):
                self._simple(f"{label}: {on}", "cluster", f"{setup}_{what}_per_s", "tasks/s", "{:,.0f}")


def render(out: dict[str, Any], markdown: bool = False) -> str:
    table = Table(out)
    head = ["benchmark", *table.columns, "YADTQ/other" if table.peers else "YADTQ/Celery", "target", "met", "load"]
    lines = [[r.label, *(r.cells.get(c, "") for c in table.columns), r.ratio, r.target, r.met, r.load]
             for r in table.rows]
    text: list[str] = []
    if markdown:
        text += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row, line in zip(table.rows, lines, strict=True):
            text.append(f"| **{row.label}** |" + " |" * (len(head) - 1) if row.title
                        else "| " + " | ".join(line) + " |")
    else:
        figures = [line for row, line in zip(table.rows, lines, strict=True) if not row.title]
        widths = [max([len(h), *(len(line[i]) for line in figures)]) for i, h in enumerate(head)]
        text.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
        for row, line in zip(table.rows, lines, strict=True):
            text.append(f"\n{row.label}" if row.title else
                        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    failed = errors(out)
    if failed:
        text.append("\nERRORS (the run went on without these figures):")
        text += [f"  {e}" for e in failed]
    text.append(f"\n(load = 1-minute load average on {out.get('cpus', '?')} CPUs after the YADTQ / other runs; "
                f"whole run {out.get('wall_s', '?')} s, load {out.get('load_at_start', '?')} at start, "
                f"{out.get('load_at_end', '?')} at end)")
    return "\n".join(text)

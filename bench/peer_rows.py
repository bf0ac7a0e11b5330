"""The table's peers section (issue 22): YADTQ's `add` end to end beside Dramatiq's and arq's, ratio YADTQ ÷ peer.

A row per peer and Redis setting, both sides on that setting; for Dramatiq one more row, YADTQ on its
durable Redis against Dramatiq without persistence. The YADTQ columns hold YADTQ's figure (the "scale"
row with 2 workers, or its run without persistence), the peer column the peer's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.table import Cell, Figures, Table

PEER = "peer"
WORKERS = 2  # worker processes on both sides
KEY = "end_to_end_per_s"
# Redis setting -> (where YADTQ's figure is in its column's results, how the row names it)
SETTINGS = {"fsync_always": ("scale", "fsync always"), "no_persistence": ("scale_no_persistence", "no persistence")}
# Issue 22's targets for YADTQ ÷ peer: at equal Redis settings, and durable YADTQ against the peer without persistence.
EQUAL_TARGET = {"dramatiq": 2.5}
DURABLE_VS_NONE_TARGET = {"dramatiq": 1.5}


def add(table: Table) -> None:
    for key, peer in table.peers.items():
        name = peer["label"]
        for setting, (bench, words) in SETTINGS.items():
            _row(table, f"{name}: both {words}", bench, peer.get(setting), EQUAL_TARGET.get(key))
        if key in DURABLE_VS_NONE_TARGET:
            _row(table, f"{name}: YADTQ fsync always, peer no persistence", "scale",
                 peer.get("no_persistence"), DURABLE_VS_NONE_TARGET[key])


def _row(table: Table, label: str, bench: str, peer_cell: Any, target: float | None) -> None:
    from bench.table import ERROR_CELL, med, spread, verdict
    peer_failed = isinstance(peer_cell, dict) and "error" in peer_cell
    peer_val = med(peer_cell, KEY)
    wanted = f">= {target:g}x" if target else ""

    def yadtq_cell(y: Figures) -> Any:
        cell = y.get(bench, {}).get(str(WORKERS))
        return cell

    def cell(y: Figures) -> Cell | None:
        fig = yadtq_cell(y)
        if isinstance(fig, dict) and "error" in fig:
            return ERROR_CELL
        v = med(fig, KEY)
        if v is None:
            return None
        ratio = v / peer_val if peer_val else None
        if ratio is not None:
            met = verdict([(wanted, ratio >= target)]) if target else ""
        else:
            met = verdict([("peer not measured", False)]) if target and peer_failed else ""
        return f"{v:,.0f}{spread(fig, KEY, '{:,.0f}')}", f"{ratio:.2f}x" if ratio else "", met

    peer_text = ERROR_CELL[0] if peer_failed else (
        None if peer_val is None else f"{peer_val:,.0f}{spread(peer_cell, KEY, '{:,.0f}')}")
    table._add(label, cell, peer_text, wanted, [*(yadtq_cell(y) for y in table.ys.values()), peer_cell],
               column=PEER)

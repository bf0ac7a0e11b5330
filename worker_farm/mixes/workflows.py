"""Workflows under faults: chains, groups, chords and a chord nested in a chain, beside the
ledger tasks. The promise: every workflow ends with its expected result, every callback ran
exactly once, and no member ran more than once unless a run of it was cut off (counted by the
claim in `lost_runs`)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from yadtq.task.canvas import Canvas, chain, chord, group, signature
from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


def _step(*args: int) -> Any:
    return signature("mix_wf_step", args)


def shape(kind: int, n: int) -> tuple[Canvas, Any]:
    """Workflow number `kind` (0..3) seeded with `n`, and its expected result."""
    if kind == 0:
        return chain(_step(n), _step(), _step()), n + 3
    if kind == 1:
        return group(_step(n), _step(n + 1), _step(n + 2)), [n + 1, n + 2, n + 3]
    if kind == 2:
        return chord([_step(n + i) for i in range(4)], signature("mix_wf_sum")), 4 * n + 10
    return chain(_step(n), chord([_step(), _step()], signature("mix_wf_sum")), _step()), 2 * (n + 2) + 1


@dataclass
class WorkflowsMix:
    count: int = 24
    name: str = "workflows"
    modules: tuple[str, ...] = ("worker_farm.mixes.workflow_tasks",)
    worker_args: tuple[str, ...] = ()
    expected: dict[str, Any] = field(default_factory=dict)

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        for i in range(self.count):
            wf, want = shape(i % 4, rng.randrange(1000))
            self.expected[q.submit_workflow(wf, unchecked=True)] = want

    def finished(self, q: YADTQ) -> bool:
        store = q.workflows.store
        return all((got := store.status(wid)) is not None and got[0] == Status.SUCCESS for wid in self.expected)

    def check(self, q: YADTQ) -> list[str]:
        problems = []
        notes = [str(x).split(" ", 1) for x in q.backend.r.lrange(q.settings.prefix + "mix:workflows", 0, -1)]
        runs = Counter(tid for tid, *_ in notes)
        for wid, want in self.expected.items():
            wf = q.workflows.store.get(wid)
            if wf is None or wf.status != Status.SUCCESS or wf.result != want:
                problems.append(f"{wid}: {'no record' if wf is None else wf.status} {wf and wf.result!r}, "
                                f"expected success {want!r}")
                continue
            for node in wf.nodes:
                if node.task_id is None:
                    continue
                lost = int(q.backend.r.hget(q.backend.keys.task(node.task_id), "lost_runs") or 0)
                n = runs[node.task_id]
                callback = node.task == "mix_wf_sum"
                if n == 0 or n > 1 + lost:
                    problems.append(f"{wid}: {'callback' if callback else 'member'} {node.task_id} ran {n} "
                                    f"time(s) with {lost} run(s) cut off"
                                    + (_runs_told(q, node.task_id, notes) if n > 1 else ""))
        return problems


def _runs_told(q: YADTQ, task_id: str, notes: list[list[str]]) -> str:
    """A task that ran too often, told so that the failure explains itself: each run (worker, pid,
    attempt, time), the record's counters and its events (reclaims, retries, requeues)."""
    runs = "; ".join(rest[0] for tid, *rest in notes if tid == task_id and rest)
    names = ("attempts", "failures", "lost_runs", "fence", "worker", "lost_by", "epoch", "queue")
    rec = q.backend.r.hmget(q.backend.keys.task(task_id), *names)
    fields = ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in zip(names, rec, strict=True))
    events = "; ".join(f"{ts:.3f} {text}" for ts, text in q.backend.events(task_id))
    return f" [runs (worker pid attempt time): {runs}] [record: {fields}] [events: {events or 'none'}]"

"""A chaos mix: work of another kind run beside the ledger tasks under the same faults.

The ledger tasks prove the core promise (nothing lost, nothing run twice unless
cut off). Each capability built on top of it (schedules, limits, workflows,
queues) has a promise of its own, and a fault may break that promise without
losing a ledger task. A mix submits its own work once the ledger tasks are in,
says when all of it has ended, and at the end checks its promise, returning one
line per violation. Mixes live in worker_farm/mixes/, one module each; the
all-faults chaos test and `bench/chaos.py` run the mixes they are given.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


class ChaosMix(Protocol):
    """One kind of work in a chaos run, with its own promise."""

    #: A short name for reports ("workflows", "limits", ...).
    name: str
    #: Task modules every worker of the run imports (`--tasks`), beside the ledger's.
    modules: tuple[str, ...]
    #: Extra arguments for every worker of the run (e.g. `--queues high,default`).
    worker_args: tuple[str, ...]

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        """Submits the mix's work (called once, after the ledger tasks)."""

    def finished(self, q: YADTQ) -> bool:
        """True once all of the mix's work has ended (the run waits for it, within its drain time)."""

    def check(self, q: YADTQ) -> list[str]:
        """After the run: one line per broken promise; empty when the mix kept it."""


def mix_modules(mixes: Sequence[ChaosMix]) -> tuple[str, ...]:
    """The task modules the mixes need, each once, in order."""
    return tuple(dict.fromkeys(m for mix in mixes for m in mix.modules))


def mix_worker_args(mixes: Sequence[ChaosMix]) -> tuple[str, ...]:
    """The mixes' extra worker arguments, in order."""
    return tuple(a for mix in mixes for a in mix.worker_args)

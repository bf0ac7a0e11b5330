"""Chaos mixes (worker_farm/chaos_mix.py): one module per capability under test.

`all_mixes()` is what the all-faults chaos test runs; each mix module adds one line there.
"""

from __future__ import annotations

from worker_farm.chaos_mix import ChaosMix
from worker_farm.mixes.cancels import CancelsMix
from worker_farm.mixes.delayed import DelayedMix
from worker_farm.mixes.keys import KeysMix
from worker_farm.mixes.limits import LimitsMix
from worker_farm.mixes.live import LiveMix
from worker_farm.mixes.periodic import PeriodicMix
from worker_farm.mixes.queues import QueuesMix
from worker_farm.mixes.retries import RetriesMix
from worker_farm.mixes.workflows import WorkflowsMix


def all_mixes() -> list[ChaosMix]:
    """A fresh instance of every mix (each keeps the ids it submitted)."""
    mixes: list[ChaosMix] = [
        RetriesMix(),
        KeysMix(),
        DelayedMix(),
        LimitsMix(),
        PeriodicMix(),
        QueuesMix(),
        LiveMix(),
        WorkflowsMix(),
        CancelsMix(),
    ]
    return mixes

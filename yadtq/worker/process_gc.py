"""The cyclic garbage collector of a worker process: its start-up frozen, its youngest generation collected less often.

A worker allocates a few dozen container objects per task (the record, its message and work, the
claim and its verdict, the job, the finished outcome, the event lines' dicts), and nearly all of
them are freed by reference counting as soon as the task's outcome is stored. CPython's collector
does not know that: at its default threshold (700 allocations) it ran a young collection every few
tasks, and each full one walked every object of the process, the imported modules, the registry and
the clients included. Measured with `gc.callbacks` over 20,000 `add` tasks on 2 workers (start-up
left out), the collector took about 2.5% of the workers' CPU; with the start-up frozen and a young
threshold of 10,000, under 0.5%.

Only `yadtq worker` calls this, once everything is imported and connected: it is a choice for a
process YADTQ owns, never made for a process that imports YADTQ as a library. What a task module
set at import is kept: a higher threshold, and a collector it disabled.

The price of freezing: an object alive at the freeze that is later dropped inside a reference
cycle (a client replaced after an outage, say) is never collected. It is paid at most once per
object of the start-up; everything made after the freeze is collected as before.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations (less deallocations) between two collections of the youngest generation


def tune_worker_gc() -> None:
    """Collects what start-up left, freezes what is left alive, and raises the young threshold."""
    gc.collect()
    # Frozen objects are never examined again: the modules, the registry, the settings and the
    # clients live as long as the process does.
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)

"""Claims beyond the free slots while the tasks run short: more tasks per step, fewer round trips per task.

A step is one Redis round trip (a script call and, with `appendfsync always`, an fsync) that stores the
outcomes finished since the last one and claims records for the slots they free. When tasks take a
fraction of a millisecond, a step carries about as many tasks as the worker has slots, and its fixed
cost (the round trip, the script's setup, the client's packing and parsing) comes back every few tasks.
While its recent runs are short, a worker claims up to `claim_ahead` records more than it has free
slots. They wait in the executor's queue for a thread, as Celery's prefetched and Dramatiq's buffered
messages do, and the next step stores their outcomes with the others'.

Only while the runs are short (a moving average under SHORT_RUN seconds, after WARM_UP runs): a claim
made ahead then starts within about one short run of its claim, so a claim means what it meant before.
Its `started` time, its lease, the start a rate limit granted at the claim, a run counted cut off when
its worker dies holding it: all still hold within a few milliseconds. A long run turns it off at once
(the average takes a tenth of it); it comes back after a dozen short runs or more, the longer the run the more.

A claim ahead waits for a thread; an `async def` task takes none (it runs on the worker's event loop as
soon as it is handed over), so only the claims bound how many run at once. The dispatcher never claims
one ahead, and claims nothing ahead while one is in hand: a worker still runs at most `concurrency`
tasks at once, threads and event loop together.
"""

from __future__ import annotations

SHORT_RUN = 0.005  # seconds: the runs a worker claims ahead for, on average
WARM_UP = 32  # runs seen before the average is trusted
WEIGHT = 0.1  # of the newest run in the moving average


class ClaimAhead:
    """How many records a worker may claim beyond its free slots now: `limit` while its runs are short, else 0."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.average = 0.0  # seconds, exponentially weighted over the runs seen
        self.seen = 0

    def ran(self, seconds: float) -> None:
        """A run ended after `seconds`."""
        self.average += WEIGHT * (seconds - self.average) if self.seen else seconds
        self.seen += 1

    def extra(self) -> int:
        if self.seen < WARM_UP or self.average >= SHORT_RUN:
            return 0
        return self.limit

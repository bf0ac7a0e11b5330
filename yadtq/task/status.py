"""A task's status: the one list of names the Python code and the Lua scripts share.

Every record holds one of these in its `status` field and sits in the index
`status:<name>` (yadtq.store.keys). The Lua scripts in yadtq/store/lua/ write
the same names; tests/test_store_contract.py checks that they use no other.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SCHEDULED = "scheduled"    # delayed (countdown/eta): waits in Redis until due, then is published
    QUEUED = "queued"          # waiting for a worker (or a parked retry waiting until it is due)
    PROCESSING = "processing"  # claimed by a worker under a lease
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"    # cancelled while waiting (never runs) or running (its run is interrupted)
    EXPIRED = "expired"        # not started before its `expires` time: it never runs

    @property
    def final(self) -> bool:
        """A finished task: no worker runs it again (the claim skips it)."""
        return self in FINAL


# In the order the CLI, the API and the dashboard list them.
STATUSES: tuple[Status, ...] = tuple(Status)
FINAL: frozenset[Status] = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELLED, Status.EXPIRED})
# FINAL in list order, for loops whose output is shown or zipped with replies.
FINAL_IN_ORDER: tuple[Status, ...] = tuple(s for s in STATUSES if s in FINAL)

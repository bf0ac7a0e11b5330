"""The claim pipeline's names where the worker has always found them; it lives in yadtq.store.claims
(only the store talks to Redis)."""

from yadtq.store.claims import (
    Busy,
    Claim,
    ClaimedWork,
    ClaimPipeline,
    Done,
    DueRetry,
    Foreign,
    Outcome,
    Parked,
    Quarantined,
    Run,
    Verdict,
)

__all__ = ["Busy", "Claim", "ClaimPipeline", "ClaimedWork", "Done", "DueRetry", "Foreign", "Outcome", "Parked",
           "Quarantined", "Run", "Verdict"]

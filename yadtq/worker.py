"""The worker (kept importable here; the engine lives in `yadtq.engine`)."""

from yadtq.engine import EXIT_HARD_TIME_LIMIT, Worker

__all__ = ["EXIT_HARD_TIME_LIMIT", "Worker"]

"""RejectStore where the worker has always found it; it lives in yadtq.store.rejects
(only the store talks to Redis)."""

from yadtq.store.rejects import RejectedRecord, RejectStore

__all__ = ["RejectStore", "RejectedRecord"]

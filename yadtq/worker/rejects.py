"""Records that cannot run: their task is marked failed (never one that belongs to another body)."""

from __future__ import annotations

import redis

from yadtq.config import Settings
from yadtq.store.keys import Keys
from yadtq.store.scripts import load
from yadtq.worker.records import Rejected


class RejectStore:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.keys = Keys(settings.prefix)
        self._reject = client.register_script(load("reject"))

    def reject(self, work: Rejected, worker: str) -> str:
        """'rejected' | 'foreign' (the id is another task's: untouched) | the status it was left in."""
        assert work.task_id
        k = self.keys
        return str(self._reject(keys=[k.task(work.task_id), k.events(work.task_id), k.status("queued"),
                                      k.status("failed"), k.failed_by],
                                args=[work.task_id, work.task or "", work.error, work.digest, worker]))

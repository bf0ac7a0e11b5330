"""Ordering keys under faults: a keyed task must keep its key through every path that publishes it
again (the monitor's republish after the broker lost its log, a requeue of a claim whose worker
died), so it runs on its key's partition, where its key's order is kept."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yadtq.task.messages import key_partition
from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.client import YADTQ


@dataclass
class KeysMix:
    count: int = 40
    keys: int = 5
    name: str = "keys"
    modules: tuple[str, ...] = ()  # the built-in `add`
    worker_args: tuple[str, ...] = ()
    ids: dict[str, str] = field(default_factory=dict)  # task id -> its key

    def submit(self, q: YADTQ, rng: random.Random) -> None:
        keys = [f"mix-key-{rng.randrange(self.keys)}" for _ in range(self.count)]
        ids = q.submit_many([{"task": "add", "args": [n, 1], "key": key} for n, key in enumerate(keys)])
        self.ids = dict(zip(ids, keys, strict=True))

    def finished(self, q: YADTQ) -> bool:
        records = q.backend.get_many(self.ids)
        return len(records) == len(self.ids) and all(rec.status == Status.SUCCESS for rec in records)

    def check(self, q: YADTQ) -> list[str]:
        partitions = sorted(q.producer.partitions_for(q.settings.topic) or range(q.settings.partitions))
        records = {rec.task_id: rec for rec in q.backend.get_many(self.ids)}
        problems = []
        for tid, key in self.ids.items():
            rec = records.get(tid)
            if rec is None or rec.status != Status.SUCCESS:
                problems.append(f"{tid}: {'no record' if rec is None else rec.status}, expected success")
            elif rec.key != key:
                problems.append(f"{tid}: key {rec.key!r} in its record, expected {key!r}")
            elif rec.partition != key_partition(key, partitions):
                problems.append(f"{tid}: ran from partition {rec.partition}, its key's is "
                                f"{key_partition(key, partitions)}")
        return problems

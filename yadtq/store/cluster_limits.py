"""Rate and concurrency limits on a Redis Cluster (docs/redis-cluster.md, "Rate and concurrency limits").

On one server the claim step (lua/step.lua) judges a task name's limits in the call that claims
the task. On a cluster that call runs on its task's shard, while the tasks of one name sit on every
shard: a limit's state must be where every claim of that name reaches it atomically. It sits on the
cluster-wide slot (`<prefix>{g}:`), beside the limits themselves (yadtq.store.limits), and a step
that claims tasks of a limited name asks there first:

1. `lua/limit_take.lua`, one call for all of the step's claims of limited names: each is admitted
   (a rate's start taken, a run counted against max_concurrency under a lease) or answered
   `Limited` there and never sent to its shard;
2. the admitted claims go to their shards with the others (`step.lua`, which finds no limits in
   its shard's copy of the `limits` hash);
3. an admission whose claim did not run (the task was done, running elsewhere, delayed...) is given
   back (`lua/limit_give.lua`); a run's count ends with its outcome, in the same round trip as the
   step that stores it, and is renewed with its lease (`lua/limit_renew.lua`). A worker that dies
   leaves counts that lapse with their lease, as on one server.

An extra round trip per step, only for steps that claim tasks of a limited name. Which names are
limited is read from the `limits` hash at most once a second per worker: a limit set at run time
holds from the next read. Over its limit, a task waits in its worker's buffer (`Limited`), as a
keyed task does on one server: no start is booked and nothing is parked in Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from yadtq.store.batch import Batch
from yadtq.store.claim_replies import Limited, Run, Verdict
from yadtq.store.connection import RedisClient, decoded_hash
from yadtq.store.keys import Keys
from yadtq.store.scripts import bind
from yadtq.task.messages import TaskMessage

REFRESH_S = 1.0  # how stale this worker's view of which task names have limits may get
# The limits judged in Redis (key_concurrency is the worker's own, per ordering key).
JUDGED_HERE = ("interval", "max_concurrency")


@dataclass(frozen=True)
class Admission:
    """A claim admitted by limit_take.lua: what giving it back needs."""

    task: str
    member: str  # its entry in limit:running (`<task id> <incarnation>`)
    before: str  # the rate's start before this admission took one ('' none)
    taken: str  # the start it took ('' none)
    counted: bool  # counted against a max_concurrency


class ClusterLimits:
    """One worker incarnation's admissions on a cluster, and the runs they hold."""

    def __init__(self, client: RedisClient, keys: Keys, incarnation: str, lease: float) -> None:
        self.r, self.keys, self.incarnation, self.lease = client, keys, incarnation, lease
        self._take = bind(client, "limit_take")
        self._give = bind(client, "limit_give")
        self._renew = bind(client, "limit_renew")
        self._names: set[str] | None = None
        self._read_at = 0.0
        self.held: dict[str, Admission] = {}  # task id -> its running run's admission (counted ones)

    def names(self) -> set[str]:
        """The task names with a rate or a concurrency limit (run time's over the decorator's, field by
        field, as lua/limit_take.lua reads them), read at most once a second."""
        now = time.monotonic()
        if self._names is None or now - self._read_at >= REFRESH_S:
            by_name: dict[str, dict[str, Any]] = {}
            for f, raw in decoded_hash(self.r.hgetall(self.keys.limits)).items():
                origin, _, name = f.partition(":")
                by_name.setdefault(name, {})[origin] = json.loads(raw)
            self._names = {name for name, got in by_name.items()
                           if any(got.get("set", {}).get(f, got.get("code", {}).get(f)) is not None
                                  for f in JUDGED_HERE)}
            self._read_at = now
        return self._names

    def admit(self, claimed: Sequence[TaskMessage]) -> dict[int, Admission | Limited]:
        """For each claimed message (by position) of a limited name: its admission, or `Limited` (its
        claim is not to be sent)."""
        names = self.names()
        picked = [(i, m) for i, m in enumerate(claimed) if m.task in names]
        if not picked:
            return {}
        keys: list[str] = [self.keys.limits]
        args: list[str | float] = [self.lease]
        for _, m in picked:
            keys += [self.keys.limit_rate(m.task), self.keys.limit_running(m.task)]
            args += [m.task, self._member(m.task_id)]
        out: dict[int, Admission | Limited] = {}
        for (i, m), raw in zip(picked, self._take(keys=keys, args=args), strict=True):
            out[i] = Limited(float(raw[1]), str(raw[2])) if raw[0] == "limited" else \
                Admission(m.task, self._member(m.task_id), str(raw[1]), str(raw[2]), raw[3] == "1")
        return out

    def settle(self, admitted: dict[int, Admission], task_ids: Sequence[str], verdicts: Sequence[Verdict]) -> None:
        """After the claims (of `task_ids`): a run keeps its admission until its outcome; the others give
        theirs back."""
        back = []
        for i, adm in admitted.items():
            if isinstance(verdicts[i], Run):
                if adm.counted:
                    self.held[task_ids[i]] = adm
            else:
                back.append((task_ids[i], adm))
        if back:
            # A task this worker runs (a duplicate message in the step, or one delivered again while it
            # runs) shares its run's entry in limit:running: that one stays, only the rate's start goes back.
            self._give_back([a if t not in self.held else replace(a, member="") for t, a in back], self.r, rate=True)

    def ended(self, task_ids: Iterable[str], batch: Batch) -> None:
        """The runs of `task_ids` ended (outcome sent, or given back): their counts end, queued on `batch`."""
        done = [self.held.pop(t) for t in task_ids if t in self.held]
        if done:
            self._give_back(done, batch.on(self.keys.limits), rate=False)

    def renew(self, task_ids: Iterable[str]) -> None:
        """The leases of `task_ids` were renewed: so are their counts."""
        held = [self.held[t] for t in task_ids if t in self.held]
        if held:
            self._renew(keys=[self.keys.limit_running(a.task) for a in held],
                        args=[self.lease, *(a.member for a in held)])

    def forget(self, task_ids: Iterable[str]) -> None:
        """Claims lost: their counts are no longer renewed here, and lapse with their lease."""
        for t in task_ids:
            self.held.pop(t, None)

    def _give_back(self, admissions: Sequence[Admission], client: object, rate: bool) -> None:
        keys: list[str] = []
        args: list[str] = []
        for a in admissions:
            keys += [self.keys.limit_rate(a.task), self.keys.limit_running(a.task)]
            args += [a.member, a.before, a.taken if rate else ""]
        self._give(keys=keys, args=args, client=client)  # type: ignore[arg-type]  # a client or a pipeline

    def _member(self, task_id: str) -> str:
        return f"{task_id} {self.incarnation}"

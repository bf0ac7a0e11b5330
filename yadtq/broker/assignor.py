"""Partition assignment with standby members (the seeds' "guarantee consumer").

Each member sends, in its join metadata, whether it is a standby and which
partitions it held. The group leader then:

1. on a fresh group (nobody held anything) deals the partitions round-robin
   over the active members;
2. otherwise lets every active member keep what it held, up to its quota
   (sticky, so a rebalance moves only what must);
3. fills every active member up to its quota (partitions // actives, one
   more for the members holding most), taking first what a standby held, so a
   joining or respawned worker gets its share at once;
4. hands the rest (the dead member's partitions) to the standbys, or to the
   least-loaded actives when there is no standby.

A standby therefore owns nothing until a failure orphans partitions, and
gives them back when a worker returns. With no active member at all,
standbys take everything.
"""

from __future__ import annotations

import collections
import json
import logging
from typing import Any

from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

log = logging.getLogger(__name__)


class StandbyAwareAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    name = "yadtq-standby"
    version = 0

    def __init__(self, standby: bool = False) -> None:
        self.standby = standby
        self.owned: list[tuple[str, int]] = []

    def metadata(self, topics: Any) -> ConsumerProtocolSubscription:
        user = json.dumps({"standby": self.standby, "owned": self.owned}).encode()
        return ConsumerProtocolSubscription(self.version, sorted(topics), user)

    def on_assignment(self, assignment: Any, generation: Any) -> None:
        self.owned = [(tp.topic, tp.partition) for tp in assignment.partitions()]

    def forget(self, lost: Any) -> None:
        """This member was evicted and these partitions were given to others: it no longer holds them."""
        gone = {(tp.topic, tp.partition) for tp in lost}
        self.owned = [tp for tp in self.owned if tp not in gone]

    def assign(self, cluster: Any, members: Any) -> dict[str, ConsumerProtocolAssignment]:
        info = {m.member_id: _read(m.metadata) for m in members}
        topics = sorted({t for m in members for t in m.metadata.topics})
        plan: dict[str, dict[str, list[int]]] = {mid: collections.defaultdict(list) for mid in info}
        for topic in topics:
            parts = sorted(cluster.partitions_for_topic(topic) or ())
            subscribers = sorted(m.member_id for m in members if topic in m.metadata.topics)
            for mid, ps in plan_topic(topic, parts, {mid: info[mid] for mid in subscribers}).items():
                plan[mid][topic] = ps
        return {mid: ConsumerProtocolAssignment(self.version, sorted(t.items()), b"") for mid, t in plan.items()}


def _read(metadata: Any) -> dict[str, Any]:
    try:
        body = json.loads(bytes(metadata.user_data or b"{}"))
        return {"standby": bool(body.get("standby")), "owned": [tuple(x) for x in body.get("owned", [])]}
    except (ValueError, TypeError, AttributeError):
        return {"standby": False, "owned": []}


def plan_topic(topic: str, partitions: list[int], members: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
    """The assignment of one topic's partitions: {member_id: [partition, ...]}."""
    out: dict[str, list[int]] = {mid: [] for mid in members}
    if not members or not partitions:
        return out
    actives = sorted(m for m, i in members.items() if not i["standby"])
    standbys = sorted(m for m, i in members.items() if i["standby"])
    held = {mid: [p for (t, p) in i["owned"] if t == topic and p in partitions] for mid, i in members.items()}
    if not actives:
        actives, standbys = standbys, []
    fresh = not any(held.values())
    if fresh:
        for n, p in enumerate(partitions):
            out[actives[n % len(actives)]].append(p)
        return out
    # Balanced and sticky: every active member's quota is n // m, and the n % m
    # members holding the most get one more; each keeps what it held up to its
    # quota, so a joining member takes its share at the next rebalance.
    base, extra = divmod(len(partitions), len(actives))
    by_held = sorted(actives, key=lambda m: (-len(held[m]), m))
    quota = {mid: base + (1 if n < extra else 0) for n, mid in enumerate(by_held)}
    taken: set[int] = set()
    for mid in actives:
        for p in held[mid]:
            if p not in taken and len(out[mid]) < quota[mid]:
                out[mid].append(p)
                taken.add(p)
    standby_held = [p for mid in standbys for p in held[mid] if p not in taken]
    pool = standby_held + [p for p in partitions if p not in taken and p not in standby_held]
    for mid in by_held[::-1]:  # members short of their quota (newcomers first) fill up from the pool
        # With standbys, a dead member's share goes to them, not to the survivors.
        while len(out[mid]) < quota[mid] and pool and (not standbys or not held[mid]):
            out[mid].append(pool.pop(0))
    if standbys:
        for mid in standbys:
            for p in held[mid]:
                if p in pool:
                    out[mid].append(p)
                    pool.remove(p)
        for p in pool:
            out[sorted(standbys, key=lambda m: len(out[m]))[0]].append(p)
    else:
        for p in pool:
            out[min(actives, key=lambda m: len(out[m]))].append(p)
    return out

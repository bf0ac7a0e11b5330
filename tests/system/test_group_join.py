"""A member whose group join outlives its polls still gets its partitions, on both brokers.

A worker far from the broker (200 ms of round trip) polls with short timeouts and spends longer
between polls (Redis round trips) than in them, so its JoinGroup -> SyncGroup finishes while no
poll awaits it. kafka-python 3.0.12 then threw the finished join away and sent a new JoinGroup,
again and again, restarting the group's rebalance each time: the far worker held no partition
for 30 s or more, or never (found with tests/system/test_hosts.py's degraded host).
yadtq/broker/group_join.py applies such a join. Here the far member is simulated on localhost:
it polls without waiting and only every 0.3 s, longer than a join takes.
"""

from __future__ import annotations

import time

from conftest import wait_for

from yadtq.config import Settings
from yadtq.worker.source import ASSIGNED, REVOKED, KafkaSource


def _owned(source: KafkaSource, owned: set[int]) -> None:
    for event in source.rebalances():
        if event.kind == REVOKED:
            owned.difference_update(event.partitions)
        elif event.kind == ASSIGNED:
            owned.update(event.partitions)


def test_a_member_whose_joins_finish_between_its_polls_gets_its_partitions(settings: Settings) -> None:
    near = KafkaSource(settings, "near", standby=False)
    far = KafkaSource(settings, "far", standby=False)
    owned: dict[str, set[int]] = {"near": set(), "far": set()}
    last_far_poll = 0.0

    def turn() -> bool:
        nonlocal last_far_poll
        near.poll(0.05)  # as the engine while idle
        _owned(near, owned["near"])
        if time.monotonic() - last_far_poll > 0.3:
            far.poll(0)  # as the engine while busy; the join's replies land between these polls
            last_far_poll = time.monotonic()
            _owned(far, owned["far"])
        both = bool(owned["near"]) and bool(owned["far"])
        return both and owned["near"] | owned["far"] == set(range(settings.partitions))

    try:
        started = time.monotonic()
        wait_for(turn, 30, 0.0, "both members to own partitions")
        print(f"both members own partitions {time.monotonic() - started:.1f}s after they started: {owned}")
        assert not owned["near"] & owned["far"], owned
    finally:
        far.close()
        near.close()

"""Workarounds for kafka-python 3.0.12 dropping a group join that outlives the poll that started it.

The consumer runs each JoinGroup -> SyncGroup attempt as a task on its IO thread and keeps the
task across polls, so a short `poll(timeout)` can give up on a join and the next poll awaits it
again. Two ways the result of a join is lost:

* **A join that finishes between two polls is thrown away.** `join_group_async` starts a new
  JoinGroup when it finds the task done (`_join_task.is_done`) instead of taking its result.
  With a round trip longer than the poll's timeout (a worker 200 ms away polls every 100 ms or
  less, and spends more time between polls on Redis round trips than in them), almost every
  join finishes between polls: the member sends JoinGroup after JoinGroup, each restarting the
  group's rebalance, and holds no partition for 30 s or more, or never. `finish_dropped_join`
  applies the finished join's assignment exactly as kafka-python would have in the poll that
  awaited it.
* **A rejoin caused by new topic metadata is forgotten.** Such a rejoin is wanted only while the
  leader's assignment snapshot differs from the metadata, and the leader's assignment, run on the
  IO thread, makes them equal. If the poll that started the JoinGroup timed out first, the next
  poll no longer sees a rejoin to finish and the worker holds no partitions until the next
  rebalance (seen for 60-90 s). `keep_unfinished_rejoin` marks the rejoin as needed so the next
  poll awaits the join still in flight.

Both read kafka-python's private coordinator state (pinned in pyproject.toml); without it they
do nothing. tests/system/test_kafka_behaviour.py and tests/system/test_hosts.py cover them.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka.coordinator.base import MemberState
from kafka.errors import KafkaError

log = logging.getLogger(__name__)


def _coordinator(consumer: Any) -> Any:
    return getattr(consumer, "_coordinator", None)


def finish_dropped_join(consumer: Any) -> bool:
    """Applies a JoinGroup -> SyncGroup that succeeded after the poll awaiting it returned, before
    the next poll throws it away; True if one was applied.

    Same steps as the end of kafka-python 3.0.12's `BaseCoordinator.join_group_async` once the
    join task returns: the member is STABLE in the generation the JoinGroup gave it, heartbeats
    resume, and the assignment goes through `_on_join_complete_async` (rebalance listener
    included). If the group moved on meanwhile, the next heartbeat says so and the member rejoins,
    as it would have after a poll that waited for the join.
    """
    coordinator = _coordinator(consumer)
    join = getattr(coordinator, "_join_task", None)
    if join is None or not join.is_done or not join.succeeded():
        return False  # none, in flight (a poll will await it), or failed (the next poll retries)
    with coordinator._lock:
        if coordinator._join_task is not join or coordinator.state is not MemberState.REBALANCING:
            return False  # taken meanwhile, or the member fell out of the group: kafka-python rejoins
        generation = coordinator._generation
        coordinator._join_task = None
        coordinator.rejoining = False
        coordinator.rejoin_needed = False
        coordinator.state = MemberState.STABLE
        coordinator._enable_heartbeat()
    log.info("applying the group join (generation %s) that finished after its poll returned",
             generation.generation_id)
    try:
        # On the IO thread, where kafka-python runs it (and the rebalance listener) itself.
        coordinator._net.run(coordinator._on_join_complete_async, generation.generation_id,
                             generation.member_id, generation.protocol, join.value)
    except KafkaError as exc:  # a listener failed: raised from poll in kafka-python's own path
        log.warning("applying the finished group join failed: %s; rejoining", exc)
        coordinator.request_rejoin()
    return True


def keep_unfinished_rejoin(consumer: Any) -> bool:
    """Marks the group for rejoining while a join is in flight that the next poll would otherwise
    not await; True if it did."""
    coordinator = _coordinator(consumer)
    join = getattr(coordinator, "_join_task", None)
    if coordinator is not None and join is not None and not coordinator.need_rejoin():
        log.info("rejoining the group: the last join finished after its poll returned")
        coordinator.request_rejoin()
        return True
    return False

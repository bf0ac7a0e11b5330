"""Static group membership (Kafka's KIP-345): a worker joins its consumer group under its name.

A static member that restarts under the same `group.instance.id` within the session timeout gets
its partitions back from the broker without a group-wide rebalance: the other workers never stop.
A member that dies for good is removed after the session timeout, as a dynamic one is.

Two things kafka-python does not do for us:

- A static member sends no LeaveGroup when it closes (the broker would wait out the session
  timeout before moving its partitions). A clean stop is a departure, so `leave_group` sends one
  with the member's `group.instance.id` (LeaveGroup v3+), and the partitions move at once.
- It does not know which brokers handle static members well. The embedded broker (tansu 0.6)
  accepts `group.instance.id` but then rebalances the group every few seconds and never gives a
  restarted member its partitions back (measured, docs/several-machines.md), so "auto" keeps
  dynamic membership there; the embedded broker names its cluster `tansu_cluster`.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka.errors import KafkaError

from yadtq.broker.session import EMBEDDED_CLUSTER_ID, cluster_id
from yadtq.config import Settings

log = logging.getLogger(__name__)

# Cluster ids of brokers whose static membership is broken; "auto" stays dynamic on them.
DYNAMIC_ONLY_CLUSTERS = frozenset({EMBEDDED_CLUSTER_ID})


def static_on(settings: Settings) -> bool:
    """Whether workers join as static members: YADTQ_STATIC_MEMBERSHIP on/off, or auto (on unless the
    broker is one whose static membership is broken). Raises `BrokerUnavailable` like any client."""
    if settings.static_membership != "auto":
        return settings.static_membership == "on"
    cluster = cluster_id(settings)
    if not cluster:
        log.warning("static membership: cluster id unreadable; joining as a dynamic member")
        return False
    return cluster not in DYNAMIC_ONLY_CLUSTERS


def consumer_options(settings: Settings, name: str) -> dict[str, Any]:
    """The consumer options of a worker called `name` (unique among live workers, store/worker_names.py)."""
    if not static_on(settings):
        return {}
    log.info("joining consumer group %s as static member %s", settings.group, name)
    return {"group_instance_id": name}


def leave_group(consumer: Any, timeout_ms: int) -> None:
    """Sends LeaveGroup for a static member before `consumer.close()`, so its partitions move now.

    kafka-python's coordinator skips LeaveGroup when `is_dynamic_member()` is false; its request
    already carries the member's group.instance.id, so the coordinator is told it is dynamic for
    this one call. Best effort: a LeaveGroup that fails leaves the broker to the session timeout."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or coordinator.group_instance_id is None:
        return  # dynamic: close() leaves the group itself
    try:
        coordinator.is_dynamic_member = lambda: True
        coordinator.maybe_leave_group(reason="worker stopped", timeout_ms=timeout_ms)
    except KafkaError as exc:
        log.warning("LeaveGroup failed (%s): the partitions move after the session timeout", exc)

"""The Redis Cluster URL, the shard of a task id, and the slot split of `--redis-cluster N` (no processes)."""

from __future__ import annotations

import pytest
import redis

from yadtq.config import Settings
from yadtq.errors import ConfigError
from yadtq.store.cluster import (
    DEFAULT_SHARDS,
    global_prefix,
    is_cluster_url,
    parse_cluster_url,
    shard_key,
    shard_of,
    shard_prefix,
)
from yadtq.store.cluster_admin import SLOTS, slot_ranges
from yadtq.store.keys import Keys
from yadtq.store.keyspace import KeySpace
from yadtq.store.workflows import WorkflowStore


def test_a_cluster_url_names_its_nodes_credentials_and_shards() -> None:
    t = parse_cluster_url("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001/0?shards=32")
    assert t.nodes == (("10.0.0.1", 7000), ("::1", 7001))
    assert (t.username, t.password, t.shards) == ("u", "p@ss", 32)
    assert parse_cluster_url("redis+cluster://h:1").shards == DEFAULT_SHARDS
    assert is_cluster_url("REDIS+CLUSTER://h:1") and not is_cluster_url("redis://h:1/0")


@pytest.mark.parametrize("url", ["redis+cluster:///0", "redis+cluster://h/0", "redis+cluster://h:1/3",
                                 "redis+cluster://h:1/0?shards=0", "redis+cluster://h:1/0?replicas=1",
                                 "redis://h:1/0"])
def test_a_malformed_cluster_url_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_cluster_url(url.replace("//", "//u:secret@", 1))
    assert "secret" not in str(err.value)


def test_a_task_id_always_lands_on_the_same_shard_and_ids_spread_over_all() -> None:
    assert shard_of("abc", 16) == shard_of("abc", 16)
    assert len({shard_of(f"task-{i}", 16) for i in range(400)}) == 16
    assert all(0 <= shard_of(f"x{i}", 3) < 3 for i in range(50))


def test_a_workflow_member_lands_on_its_workflows_shard() -> None:
    wf = "wf-0123456789abcdef"
    assert shard_key(f"{wf}.7") == wf and shard_key(wf) == wf
    assert {shard_of(f"{wf}.{i}", 16) for i in range(30)} == {shard_of(wf, 16)}
    # Only the workflow id form counts: an ordinary id with a dot is its own shard key.
    assert shard_key("order.42") == "order.42"


def test_a_shards_keys_share_one_hash_tag_and_global_keys_another() -> None:
    keys = Keys(shard_prefix("yadtq:", 7))
    assert keys.task("a") == "yadtq:{s7}:task:a" and keys.status("queued") == "yadtq:{s7}:status:queued"
    assert Keys(global_prefix("yadtq:")).workers == "yadtq:{g}:workers"


def test_slots_are_split_evenly_and_completely() -> None:
    ranges = slot_ranges(3)
    assert ranges == [(0, 5460), (5461, 10921), (10922, 16383)]
    assert sum(hi - lo + 1 for lo, hi in ranges) == SLOTS
    with pytest.raises(ValueError):
        slot_ranges(0)


def test_a_linked_tasks_workflow_is_drawn_onto_the_tasks_shard() -> None:
    s = Settings(redis_url="redis+cluster://127.0.0.1:1/0", prefix="p:")
    store = WorkflowStore(redis.Redis(), s)  # no command is sent: ids and keys only
    space = KeySpace.of(s)
    for near in ("order-1", "x", "another-id"):
        assert space.for_task(store.new_id(near=near)) == space.for_task(near)
    one = WorkflowStore(redis.Redis(), Settings(prefix="p:"))  # one server: any id will do
    assert one.new_id(near="order-1").startswith("wf-")

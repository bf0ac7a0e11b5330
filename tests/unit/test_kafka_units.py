"""yadtq.ops.kafka_cluster and topic settings without a broker: what is missing is one clear line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from yadtq.broker.clients import topic_replication
from yadtq.config import Settings
from yadtq.ops import kafka_cluster
from yadtq.ops.kafka_cluster import KafkaCluster, KafkaSetupError, check_java, java_major, kafka_classpath


@pytest.mark.parametrize(("output", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('java version "1.8.0_402"', 8),
    ('openjdk version "21" 2023-09-19', 21),
])
def test_java_major_reads_every_version_style(output: str, major: int) -> None:
    assert java_major(output) == major


def test_missing_java_and_mvn_are_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KafkaSetupError, match=r"^java not found on PATH: Apache Kafka .* needs Java 17\+"):
        check_java()
    with pytest.raises(KafkaSetupError, match=r"^mvn not found on PATH: Apache Kafka .* fetched once with Maven"):
        kafka_classpath(cache_root=tmp_path / "cache")


def test_an_old_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = tmp_path / "java"
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(KafkaSetupError, match=r"is Java 11: Apache Kafka .* needs Java 17\+"):
        check_java()


def test_a_data_dir_of_another_layout_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    data.mkdir()
    (data / "cluster.json").write_text(json.dumps({"kafka": "4", "nodes": [[1, 9092, 9093]], "cluster_id": "x"}))
    with pytest.raises(KafkaSetupError, match=r"laid out as \[\[1, 9092, 9093\]\].*remove that directory"):
        KafkaCluster.local(data, tmp_path / "logs", 9092, nodes=3).prepare()


def test_a_cluster_id_starting_with_a_dash_formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1 in 64 random ids starts with "-": the storage tool must not read it as a flag (it did)."""
    monkeypatch.setattr(kafka_cluster, "new_cluster_id", lambda: "-" + "A" * 21)
    c = KafkaCluster.local(tmp_path / "kafka", tmp_path / "logs", 9092)
    c.prepare()
    assert (tmp_path / "kafka" / "node-1" / "log" / "meta.properties").exists()
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in (tmp_path / "kafka" / "node-1" / "log" / "meta.properties").read_text()


def test_each_node_is_controller_and_broker_with_replicated_internal_topics(tmp_path: Path) -> None:
    c = KafkaCluster.local(tmp_path / "kafka", tmp_path / "logs", 9092, nodes=3,
                           broker_config={"group.initial.rebalance.delay.ms": "0"})
    assert c.bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    props = c.properties(2)
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9095,2@127.0.0.1:9096,3@127.0.0.1:9097"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9096"
    assert props["offsets.topic.replication.factor"] == "3" and props["transaction.state.log.min.isr"] == "2"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert Path(props["log.dirs"]).is_relative_to(tmp_path / "kafka")
    single = KafkaCluster.local(tmp_path / "one", tmp_path / "logs", 9092).properties(1)
    assert single["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert single["offsets.topic.replication.factor"] == "1"


@pytest.mark.parametrize(("rf", "isr", "brokers", "want"), [
    (0, 0, 1, (1, {})),                                   # the embedded broker, a single Kafka node
    (0, 0, 3, (3, {"min.insync.replicas": "2"})),         # a 3-node cluster can lose one
    (0, 0, 5, (3, {"min.insync.replicas": "2"})),
    (0, 0, 2, (2, {})),
    (3, 3, 5, (3, {"min.insync.replicas": "3"})),         # settings win
    (1, 0, 3, (1, {})),
    (2, 1, 3, (2, {"min.insync.replicas": "1"})),
])
def test_topic_replication_fits_the_cluster_unless_set(rf: int, isr: int, brokers: int,
                                                       want: tuple[int, dict[str, str]]) -> None:
    s = Settings(replication_factor=rf, min_insync_replicas=isr)
    assert topic_replication(s, brokers) == want


def test_static_membership_is_auto_on_or_off_and_forced_values_need_no_broker() -> None:
    from yadtq.broker.static_membership import consumer_options
    from yadtq.errors import ConfigError
    assert Settings().static_membership == "off"  # opt in: auto (where the broker supports it) or on
    assert Settings.from_env({"YADTQ_STATIC_MEMBERSHIP": "off"}).static_membership == "off"
    with pytest.raises(ConfigError, match="static_membership must be 'auto', 'on' or 'off'"):
        Settings(static_membership="yes")
    # Forced values decide without asking the broker (none listens at this address).
    s = Settings(kafka_bootstrap="127.0.0.1:1", connect_timeout=0.2)
    assert consumer_options(s.replace(static_membership="on"), "W1") == {"group_instance_id": "W1"}
    assert consumer_options(s.replace(static_membership="off"), "W1") == {}


def test_a_dynamic_member_leaves_through_close_alone() -> None:
    from types import SimpleNamespace

    from yadtq.broker.static_membership import leave_group
    sent: list[str] = []
    coordinator = SimpleNamespace(group_instance_id=None, maybe_leave_group=lambda **kw: sent.append("leave"))
    leave_group(SimpleNamespace(_coordinator=coordinator), 100)
    assert sent == []  # kafka-python's close() sends its LeaveGroup
    coordinator.group_instance_id = "W1"
    leave_group(SimpleNamespace(_coordinator=coordinator), 100)
    assert sent == ["leave"] and coordinator.is_dynamic_member() is True


def test_every_client_stops_backing_off_reconnects_at_a_second_unless_the_options_say_otherwise() -> None:
    # kafka-python's own ceiling (30 s) kept a client that waited out an outage away for seconds
    # after the broker returned: the monitor then declared live workers DEAD.
    from yadtq.broker.clients import _common
    assert _common(Settings())["reconnect_backoff_max_ms"] == 1000
    assert _common(Settings(kafka_options={"reconnect_backoff_max_ms": 5000}))["reconnect_backoff_max_ms"] == 5000

"""The `redis+sentinel://` URL (issue 19 item 4), without processes."""

from __future__ import annotations

import pytest

from yadtq.config import Settings
from yadtq.errors import ConfigError
from yadtq.store.replication import ReplicaAck
from yadtq.store.sentinel import SentinelTarget, parse_sentinel_url


def test_sentinel_url_names_the_sentinels_master_db_and_options() -> None:
    got = parse_sentinel_url("redis+sentinel://:s3cret@h1:26379,[::1]:26380/mymaster/2?ack_timeout_ms=250")
    assert got == SentinelTarget(sentinels=(("h1", 26379), ("::1", 26380)), master="mymaster", db=2,
                                 password="s3cret", ack_timeout_ms=250)
    assert parse_sentinel_url("redis+sentinel://h:1/m").db == 0
    assert ReplicaAck.for_settings(Settings(redis_url="redis://127.0.0.1:6379/0")) is None
    assert ReplicaAck.for_settings(Settings(redis_url="redis+sentinel://h:1/m?replicas_ack=0")) is None
    assert ReplicaAck.for_settings(Settings(redis_url="redis+sentinel://h:1/m")) == ReplicaAck(1, 1000)
    for bad in ("redis+sentinel://h/m", "redis+sentinel://h:1/", "redis+sentinel://h:1/m/x",
                "redis+sentinel://:pw@h:1/m?nope=1", "redis+sentinel://h:1/m?replicas_ack=-1"):
        with pytest.raises(ConfigError) as err:
            parse_sentinel_url(bad)
        assert "pw" not in str(err.value)


def test_a_worker_behind_sentinel_tries_redis_at_least_every_second_during_an_outage() -> None:
    # A failover is over in seconds: a worker still in a long backoff once the new primary serves
    # lets its running tasks' leases lapse (their outcomes fenced out, the tasks run again).
    from yadtq.worker.outages import RedisOutages, max_delay_for

    sentinel = Settings(redis_url="redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0")
    plain = Settings(redis_url="redis://127.0.0.1:6379/0")
    delays = {}
    for name, s in (("sentinel", sentinel), ("plain", plain)):
        outages = RedisOutages(lambda exc: None, lambda: None, max_delay=max_delay_for(s))
        for _ in range(10):
            outages.lost(ConnectionError("down"))
        delays[name] = outages.delay
    assert delays == {"sentinel": 1.0, "plain": 5.0}

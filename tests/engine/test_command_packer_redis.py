"""A `connect_redis` client packs its commands with yadtq.store.command_packer, and a real Redis
reads them as redis-py's own packing would have it: scripts, pipelines, and every argument type."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from yadtq.config import Settings
from yadtq.store.command_packer import CommandPacker
from yadtq.store.connection import RedisClient, connect_redis

ECHO = "return ARGV"


@pytest.fixture
def client(redis_url: str) -> Iterator[RedisClient]:
    c = connect_redis(Settings(redis_url=redis_url, prefix=f"p{uuid.uuid4().hex[:8]}:"))
    yield c
    c.close()


def test_the_client_packs_with_command_packer(client: RedisClient) -> None:
    assert isinstance(client.connection_pool.connection_kwargs["command_packer"], CommandPacker)
    conn = client.connection_pool.get_connection()
    try:
        assert isinstance(conn._command_packer, CommandPacker)
    finally:
        client.connection_pool.release(conn)


def test_every_argument_reaches_redis_as_redis_py_sends_it(client: RedisClient) -> None:
    args = ["plain", "ünïcode ✓", b"bytes", bytearray(b"array"), memoryview(b"view"), 7, 10**20, 2.5, ""]
    assert client.eval(ECHO, 0, *args) == ["plain", "ünïcode ✓", "bytes", "array", "view", "7",
                                            "100000000000000000000", "2.5", ""]
    key = f"p{uuid.uuid4().hex}"
    pipe = client.pipeline()
    pipe.hset(key, mapping={"a": bytearray(b"1"), "b": memoryview(b"2")})
    pipe.client_setname("packer-test")  # a two-word command name, split as redis-py splits it
    pipe.hgetall(key)
    assert pipe.execute()[1:] == [True, {"a": "1", "b": "2"}]
    client.delete(key)


def test_a_bad_argument_is_refused_before_it_is_sent(client: RedisClient) -> None:
    with pytest.raises(redis.DataError):
        client.eval(ECHO, 0, None)  # type: ignore[arg-type]
    assert client.ping()  # the connection is still in step

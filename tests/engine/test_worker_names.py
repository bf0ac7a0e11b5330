"""Taking over the name of a worker that died: only from a holder of this very process space (host
name, boot, pid namespace) whose pid is gone. A pid seen from another container or another boot says
nothing: such a holder keeps its name until its lease ends, even when its pid is free here."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from yadtq.config import Settings
from yadtq.store.connection import RedisClient, connect_redis
from yadtq.store.keys import Keys
from yadtq.store.worker_names import claim_worker_name, name_holder, process_space


@pytest.fixture
def keys() -> Keys:
    return Keys(f"t{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def client(redis_url: str) -> Iterator[RedisClient]:
    c = connect_redis(Settings(redis_url=redis_url))
    yield c
    c.close()


@pytest.fixture(scope="module")
def dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def _held(client: RedisClient, keys: Keys, name: str, pid: int, **fields: str) -> None:
    client.hset(keys.worker_name(name), mapping={"incarnation": "old", "host": socket.gethostname(), "pid": pid,
                                                 "since": 0, **fields})
    client.expire(keys.worker_name(name), 60)


def test_a_claim_notes_the_process_space(client: RedisClient, keys: Keys) -> None:
    assert process_space()  # Linux: a boot id and a pid namespace
    assert claim_worker_name(client, keys, "W1", "new", 30)
    holder = name_holder(client, keys, "W1")
    assert holder is not None and holder.space == process_space() and holder.pid == os.getpid()


def test_a_dead_holder_of_this_process_space_is_replaced(client: RedisClient, keys: Keys, dead_pid: int) -> None:
    _held(client, keys, "W1", dead_pid, space=process_space())
    assert claim_worker_name(client, keys, "W1", "new", 30)
    assert name_holder(client, keys, "W1").incarnation == "new"  # type: ignore[union-attr]


def test_a_live_holder_of_this_process_space_keeps_its_name(client: RedisClient, keys: Keys) -> None:
    _held(client, keys, "W1", os.getpid(), space=process_space())
    assert not claim_worker_name(client, keys, "W1", "new", 30)
    assert name_holder(client, keys, "W1").here()  # type: ignore[union-attr]


def _elsewhere(kind: str) -> str:
    boot, namespace = process_space().split("/", 1)
    return {"namespace": f"{boot}/pid:[1]", "boot": f"another-boot/{namespace}", "none": ""}[kind]


@pytest.mark.parametrize("elsewhere", ["namespace", "boot", "none"],
                         ids=["another pid namespace (a container, same host name)", "another boot",
                              "a holder that noted no space"])
def test_a_holder_elsewhere_keeps_its_name_until_its_lease_ends(client: RedisClient, keys: Keys, dead_pid: int,
                                                                elsewhere: str) -> None:
    """Its pid is free here, which says nothing of a process that runs in another pid space."""
    _held(client, keys, "W1", dead_pid, space=_elsewhere(elsewhere))
    assert not claim_worker_name(client, keys, "W1", "new", 30)
    holder = name_holder(client, keys, "W1")
    assert holder is not None and holder.incarnation == "old" and not holder.here()
    client.delete(keys.worker_name("W1"))  # the lease ended
    assert claim_worker_name(client, keys, "W1", "new", 30)

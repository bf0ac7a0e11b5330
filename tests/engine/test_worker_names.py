"""Taking over the name of a worker that died: only from a holder of this very process space (host
name, boot, pid namespace) whose pid is gone. A pid seen from another container or another boot says
nothing: such a holder keeps its name until its lease ends, even when its pid is free here."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from yadtq.config import Settings
from yadtq.store.connection import RedisClient, connect_redis
from yadtq.store.keys import Keys
from yadtq.store.name_wait import NameWait, await_worker_name
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


def _wait_for_name(client: RedisClient, keys: Keys, ttl: float, stop: threading.Event | None = None
                   ) -> tuple[NameWait, float, list[float]]:
    said: list[float] = []
    start = time.monotonic()
    waited = await_worker_name(client, keys, "W1", "new", ttl, stop or threading.Event(),
                               lambda holder, left: said.append(left))
    return waited, time.monotonic() - start, said


def test_a_restart_in_a_new_container_waits_for_the_old_lease_then_takes_the_name(
        client: RedisClient, keys: Keys, dead_pid: int) -> None:
    """A StatefulSet pod restarted under its host name: it waits out the old lease instead of exiting."""
    _held(client, keys, "W1", dead_pid, space=_elsewhere("namespace"))
    client.pexpire(keys.worker_name("W1"), 800)
    waited, took, said = _wait_for_name(client, keys, ttl=1.0)
    assert waited.claimed and name_holder(client, keys, "W1").incarnation == "new"  # type: ignore[union-attr]
    assert took >= 0.75  # after the lease, not before
    assert len(said) == 1 and 0.5 < said[0] <= 0.8  # said once, with the lease left


def test_a_holder_elsewhere_whose_lease_is_renewed_is_refused_after_one_lease(
        client: RedisClient, keys: Keys, dead_pid: int) -> None:
    _held(client, keys, "W1", dead_pid, space=_elsewhere("boot"))
    client.pexpire(keys.worker_name("W1"), 600)
    done = threading.Event()

    def renew() -> None:  # the holder runs: it renews its lease every third of it
        while not done.wait(0.2):
            client.pexpire(keys.worker_name("W1"), 600)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        waited, took, said = _wait_for_name(client, keys, ttl=0.6)
    finally:
        done.set()
        renewer.join()
    assert not waited.claimed and not waited.stopped and waited.holder is not None
    assert waited.holder.incarnation == "old" and took >= 0.6 and len(said) == 1


def test_a_live_holder_here_is_refused_at_once(client: RedisClient, keys: Keys) -> None:
    _held(client, keys, "W1", os.getpid(), space=process_space())
    waited, took, said = _wait_for_name(client, keys, ttl=30)
    assert not waited.claimed and waited.holder is not None and took < 5 and said == []


def test_a_stop_ends_the_wait(client: RedisClient, keys: Keys, dead_pid: int) -> None:
    _held(client, keys, "W1", dead_pid, space=_elsewhere("namespace"))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    waited, took, _ = _wait_for_name(client, keys, ttl=30, stop=stop)
    assert waited.stopped and not waited.claimed and took < 5
    assert name_holder(client, keys, "W1").incarnation == "old"  # type: ignore[union-attr]

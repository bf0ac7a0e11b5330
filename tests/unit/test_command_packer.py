"""yadtq.store.command_packer packs every command to the bytes redis-py's hiredis serializer makes,
and refuses what it refuses with the same error.

Property-based: random command names (one word, several words, bytes, not a name at all) and
random arguments of every type a caller might pass (str with any character, bytes, bytearray,
memoryview, int of any size, float, bool, None, a list).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.connection import HiredisRespSerializer
from redis.exceptions import DataError

from yadtq.store import command_packer
from yadtq.store.command_packer import CommandPacker, packer_option

PROFILE = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
names = st.sampled_from(["EVALSHA", "hset", "CLIENT SETINFO", " PING", "JSON.SET", "", "ÉVAL", "GET\t"]) \
    | texts | st.binary(max_size=8) | st.just(b"CLIENT SETNAME")
arguments = texts | st.binary(max_size=12) | st.binary(max_size=12).map(bytearray) \
    | st.binary(max_size=12).map(memoryview) | st.integers() | st.integers(min_value=-(10**30), max_value=10**30) \
    | st.floats(allow_nan=True, allow_infinity=True) | st.booleans() | st.none() | st.lists(st.integers(), max_size=2)


def _packed(pack: Any, args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return "bytes", b"".join(pack(*args))
    except DataError as exc:
        return "error", str(exc)


@PROFILE
@given(names, st.lists(arguments, max_size=8))
def test_packs_as_redis_py_does(name: Any, rest: list[Any]) -> None:
    args = (name, *rest)
    assert _packed(CommandPacker().pack, args) == _packed(HiredisRespSerializer().pack, args)


def test_a_step_shaped_command() -> None:
    # What the worker's hot path sends: a script's sha, many keys, text, numbers and an empty bytes.
    args = ("EVALSHA", "a" * 40, 3, "k:task:1", "k:events:1", "k:dlq", "W1", 30, 86_400.5, "ü", b"", 10**20)
    packed = CommandPacker().pack(*args)
    assert packed == HiredisRespSerializer().pack(*args)
    assert packed[0].startswith(b"*12\r\n$7\r\nEVALSHA\r\n$40\r\n")


def test_the_option_is_given_only_where_redis_py_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pinned redis-py takes a `command_packer` and has the hiredis serializer to fall back on.
    assert isinstance(packer_option()["command_packer"], CommandPacker)
    # One without them (a later major version, say) keeps its own packing rather than failing to connect.
    monkeypatch.setattr(command_packer, "_SUPPORTED", False)
    assert packer_option() == {}

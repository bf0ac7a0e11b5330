"""Packs Redis commands for redis-py as its hiredis serializer does, without its copy of every argument.

redis-py's `HiredisRespSerializer` passes every argument through a Python generator (to turn a
`bytearray` or `memoryview` into `bytes`) before hiredis packs the command in C. A worker's step
carries about 36 arguments per task (its keys, its claim, its outcome), and that copy cost as much as
hiredis's packing: a worker's share of a step packed took about 11 µs per task, 5.5 without the
copy (`bench/hot_path.py`). `CommandPacker` hands the
arguments to hiredis as they are, and gives any command hiredis refuses, or whose name is not one
plain word, to redis-py's serializer, so every command packs to the same bytes and every bad
argument raises the same `DataError` as before. A Redis Cluster client passes on to its nodes only
the connection options it knows, so its nodes keep redis-py's own packing, and so does a redis-py
without the `command_packer` option or this serializer (`packer_option`).
"""

from __future__ import annotations

import inspect
from typing import Any

import hiredis
from redis import connection

HiredisRespSerializer: Any = getattr(connection, "HiredisRespSerializer", None)
_SUPPORTED = HiredisRespSerializer is not None \
    and "command_packer" in inspect.signature(connection.AbstractConnection.__init__).parameters


def packer_option() -> dict[str, Any]:
    """The connection option that packs with `CommandPacker`; none where this redis-py could not take it."""
    return {"command_packer": CommandPacker()} if _SUPPORTED else {}


class CommandPacker:
    """A redis-py `command_packer`: the bytes redis-py's hiredis serializer makes, made faster."""

    def __init__(self) -> None:
        self._stock = HiredisRespSerializer()

    def pack(self, *args: Any) -> list[bytes]:
        name = args[0]
        # redis-py splits a name like "CLIENT SETINFO" into words; an alphabetic one is its own word.
        if type(name) is not str or not name.isalpha():
            return self._stocked(args)
        try:
            # hiredis takes str, int, float, bytes and memoryview as they are, as the stock copy
            # leaves them; it refuses a bytearray (which the copy turns into bytes) and anything
            # else (which the copy passes on for hiredis to refuse).
            return [hiredis.pack_command(args)]
        except TypeError:
            return self._stocked(args)

    def _stocked(self, args: tuple[Any, ...]) -> list[bytes]:
        packed: list[bytes] = self._stock.pack(*args)  # redis-py's serializer is untyped
        return packed

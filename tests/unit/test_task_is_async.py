"""A registered task knows once whether its function is a coroutine function (the executor asks per run)."""

from __future__ import annotations

import asyncio

from yadtq.task.registry import Registry, TaskContext


def test_a_task_is_async_when_its_function_is_a_coroutine_function() -> None:
    reg = Registry()

    @reg.task("plain")
    def plain(a: int) -> int:
        return a + 1

    @reg.task("coro")
    async def coro(a: int) -> int:
        return a + 2

    assert (reg.get("plain").is_async, reg.get("coro").is_async) == (False, True)
    ctx = TaskContext("t1", "x", 1, "W1")
    assert reg.get("plain").run([1], {}, ctx) == 2
    assert asyncio.run(reg.get("coro").run([1], {}, ctx)) == 3

"""The built-in tasks: what every worker can run without `--tasks`."""

from __future__ import annotations

import random
import time

from yadtq.task.registry import current_task, registry, task


@task
def add(a: float, b: float) -> float:
    return a + b


@task
def subtract(a: float, b: float) -> float:
    return a - b


@task
def multiply(a: float, b: float) -> float:
    return a * b


def divide(a: float, b: float) -> float:
    return a / b


# Dividing by zero again gives the same error: not worth a retry, it fails at once.
registry.register(divide, fail_on=(ZeroDivisionError,))


@task
def sleep(seconds: float) -> float:
    """Sleeps, then returns how long it slept: for demos and time-limit tests.

    Sleeps in short slices: a time limit interrupts a task between Python
    bytecodes, never inside one long blocking call. Reports its progress
    after each slice (the worker stores a few of these per second)."""
    end = time.monotonic() + seconds
    ctx = current_task()
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
        if ctx is not None and seconds > 0:
            slept = seconds - max(0.0, end - time.monotonic())
            ctx.progress(min(1.0, slept / seconds), f"slept {slept:.1f}s")
    return seconds


@task
def fail(message: str = "failed on purpose") -> None:
    """Always raises: shows retries ending in `failed`."""
    raise RuntimeError(message)


@task
def flaky(probability: float = 0.5, value: float = 0) -> float:
    """Fails with the given probability, else returns `value`."""
    if random.random() < probability:
        raise RuntimeError(f"flaky task failed (p={probability})")
    return value


@task
def total(values: list[float]) -> float:
    """The sum of a list: a chord's callback over its members' results."""
    return float(sum(values))

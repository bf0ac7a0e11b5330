"""Which errors are worth a retry: `@task(retry_on=..., fail_on=...)` judged by the `RetryRules`
policy ahead of `Retries`, with no worker, Redis or broker."""

from __future__ import annotations

import pytest
from test_worker_policies import context, task_entry

from yadtq.errors import ConfigError, TimeLimitExceeded
from yadtq.store.claims import Run
from yadtq.task.outcomes import Fail, Retry
from yadtq.task.registry import Registry
from yadtq.task.registry import registry as builtin_registry
from yadtq.worker.jobs import ERROR, FAILED, RETRY, Finished, Job
from yadtq.worker.policies import Retries
from yadtq.worker.retry_rules import RetryRules


def judged(exc: BaseException, **options: object) -> str:
    """What the built-in policies make of `exc` raised on a task's first of three tries."""
    reg = Registry()
    reg.task("t", tries=3, **options)(lambda: None)  # type: ignore[arg-type]
    job = Job(task_entry(), "t1", reg.get("t"), Run("f", 1, "t", [], {}, None, None, 0, 0.0), None, 0.0)
    ctx, _ = context()
    finished = Finished(job, ERROR, error=repr(exc), retryable=not isinstance(exc, Fail), exception=exc)
    return Retries().after_run(ctx, RetryRules().after_run(ctx, finished)).status


@pytest.mark.parametrize(("options", "exc", "outcome"), [
    ({}, ValueError("x"), RETRY),  # the default: any error, up to the tries
    ({"retry_on": (TimeoutError, ConnectionError)}, ConnectionResetError(), RETRY),  # a subclass counts
    ({"retry_on": (TimeoutError, ConnectionError)}, ValueError("x"), FAILED),
    ({"retry_on": (TimeoutError,)}, TimeLimitExceeded("limit"), FAILED),  # a time limit is not a TimeoutError
    ({"retry_on": TimeLimitExceeded}, TimeLimitExceeded("limit"), RETRY),  # one class alone is fine
    ({"fail_on": (ValueError,)}, ValueError("x"), FAILED),
    ({"fail_on": (ValueError,)}, KeyError("x"), RETRY),
    ({"retry_on": (OSError,), "fail_on": (FileNotFoundError,)}, FileNotFoundError(), FAILED),  # fail_on wins
    ({"retry_on": (OSError,), "fail_on": (FileNotFoundError,)}, PermissionError(), RETRY),
    ({"fail_on": (Exception,)}, Retry("asked", delay=1), RETRY),  # an explicit Retry always retries
    ({"retry_on": (Fail,)}, Fail("never"), FAILED),  # and Fail never does
])
def test_retry_on_and_fail_on(options: dict[str, object], exc: BaseException, outcome: str) -> None:
    assert judged(exc, **options) == outcome


def test_retry_on_takes_exception_classes_only() -> None:
    with pytest.raises(ConfigError, match="retry_on takes exception classes"):
        Registry().task("t", retry_on=("TimeoutError",))(lambda: None)  # type: ignore[arg-type]


def test_the_built_in_divide_fails_at_once_on_a_division_by_zero() -> None:
    divide = builtin_registry.get("divide")
    assert divide.fail_on == (ZeroDivisionError,) and divide.retry_on == ()

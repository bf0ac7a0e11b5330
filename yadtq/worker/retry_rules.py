"""Which errors are worth a retry, per task: `@task(retry_on=(...))` and `@task(fail_on=(...))`.

A policy (middleware) ahead of `Retries`: it only marks an error as not retryable, and
`Retries` then fails the task at once instead of trying again. The rules, in order:

* `Retry(...)` raised by the task is always retried (the task asked), `Fail(...)` never;
* an error that is an instance of a `fail_on` class fails at once (so `fail_on` wins over
  `retry_on` for a subclass: `retry_on=(OSError,), fail_on=(FileNotFoundError,)`);
* with `retry_on` given, only instances of those classes are retried, everything else fails
  at once (a time limit exceeded is `yadtq.TimeLimitExceeded`: list it to retry it);
* with neither (the default), any error is retried, up to the task's tries.
"""

from __future__ import annotations

from yadtq.task.outcomes import Retry
from yadtq.worker.context import WorkerContext
from yadtq.worker.jobs import ERROR, Finished
from yadtq.worker.middleware import Middleware


def worth_a_retry(exc: BaseException | None, retry_on: tuple[type[BaseException], ...],
                  fail_on: tuple[type[BaseException], ...]) -> bool:
    """Does this error deserve another try under these rules? (`None`: nothing to judge, yes.)"""
    if exc is None or isinstance(exc, Retry):
        return True
    if fail_on and isinstance(exc, fail_on):
        return False
    return not retry_on or isinstance(exc, retry_on)


class RetryRules(Middleware):
    """Applies a task's `retry_on`/`fail_on` to the error it raised (see the module's docstring)."""

    def after_run(self, ctx: WorkerContext, finished: Finished) -> Finished:
        task = finished.job.task
        if finished.status != ERROR or not finished.retryable or not (task.retry_on or task.fail_on):
            return finished
        if worth_a_retry(finished.exception, task.retry_on, task.fail_on):
            return finished
        return finished.but(retryable=False)

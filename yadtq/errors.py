"""One error tree for everything YADTQ raises, and the CLI's exit codes."""

from __future__ import annotations

from yadtq.redaction import redact_url

# Exit codes of every `yadtq` command (named, as dramatiq's RET_* are).
RET_OK = 0
RET_ERROR = 1
RET_USAGE = 2
RET_CONNECT = 3
RET_TASK_FAILED = 4
RET_TIMEOUT = 5


class YADTQError(Exception):
    """Base class of every error YADTQ raises."""


class ConfigError(YADTQError):
    """A setting or flag has an invalid value."""


class ConnectError(YADTQError):
    """A service did not answer at start-up. `address` names what was tried."""

    service = "service"

    def __init__(self, address: str, reason: str) -> None:
        # Every address shown is redacted.
        self.address = redact_url(address)
        self.reason = reason
        super().__init__(f"cannot reach {self.service} at {self.address}: {reason}")


class AddressInUse(ConnectError):
    """The address a server was to listen on is taken; the message says by what."""

    service = "address"

    def __init__(self, address: str, message: str) -> None:
        self.address = address
        self.reason = message
        YADTQError.__init__(self, message)


class BrokerUnavailable(ConnectError):
    service = "Kafka broker"


class BackendUnavailable(ConnectError):
    service = "Redis"


class MessageError(YADTQError):
    """A message on the tasks topic cannot be read as a task.

    `task_id` is set when the id could still be read, so the failure can be
    stored against the task.
    """

    def __init__(self, reason: str, task_id: str | None = None) -> None:
        self.task_id = task_id
        super().__init__(reason)


class SubmissionRefused(MessageError):
    """Refused before publishing: no live worker serves the task, or its arguments do not fit
    the signature the workers announced. Submit it unchecked to send it all the same."""


class TaskError(YADTQError):
    """A task cannot run at all (no retry will help)."""


class UnknownTask(TaskError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown task {name!r}")


class TaskArgumentError(TaskError):
    """The arguments do not fit the task's signature or its annotated types."""


class ResultError(TaskError):
    """A task's return value cannot be stored: not strict JSON, or over `max_result_bytes`.

    The task's attempt fails with this error (no retry: the same code returns the same value).
    """


class TimeLimitExceeded(YADTQError):
    """Raised inside a task that ran past its time limit (counts as a failed try)."""


class TaskCancelled(YADTQError):
    """Raised inside a running task that was cancelled (as `TimeLimitExceeded` is at a time limit);
    the run ends `cancelled` whatever the task does with it."""


class TaskNotFound(YADTQError):
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task with id {task_id!r}")


class TaskFailed(YADTQError):
    """`result()` of a task that ended `failed`; carries the task's error text."""

    def __init__(self, task_id: str, error: str, attempts: int) -> None:
        self.task_id = task_id
        self.error = error
        self.attempts = attempts
        super().__init__(f"task {task_id} failed after {attempts} attempt(s): {error}")


class ResultTimeout(YADTQError):
    def __init__(self, task_id: str, timeout: float, status: str) -> None:
        self.task_id = task_id
        self.status = status
        super().__init__(f"task {task_id} still {status} after {timeout:g}s")

"""YADTQ: a distributed task queue with Kafka as the broker and Redis as the result backend."""

from yadtq import builtin_tasks as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from yadtq.backend import Backend, TaskRecord
from yadtq.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import (
                          BackendUnavailable,
                          BrokerUnavailable,
                          ConfigError,
                          ConnectError,
                          MessageError,
                          ResultTimeout,
                          TaskArgumentError,
                          TaskError,
                          TaskFailed,
                          TaskNotFound,
                          TimeLimitExceeded,
                          UnknownTask,
                          YADTQError,
)
from yadtq.live import LiveState
from yadtq.messages import TaskMessage
from yadtq.middleware import Middleware
from yadtq.signals import Fail, Retry
from yadtq.tasks import Registry, current_task, registry, task

__all__ = [
                          "YADTQ",
                          "Backend",
                          "BackendUnavailable",
                          "BrokerUnavailable",
                          "ConfigError",
                          "ConnectError",
                          "Fail",
                          "LiveState",
                          "MessageError",
                          "Middleware",
                          "Registry",
                          "ResultTimeout",
                          "Retry",
                          "Settings",
                          "TaskArgumentError",
                          "TaskError",
                          "TaskFailed",
                          "TaskMessage",
                          "TaskNotFound",
                          "TaskRecord",
                          "TimeLimitExceeded",
                          "UnknownTask",
                          "YADTQError",
                          "current_task",
                          "registry",
                          "task",
]
__version__ = "0.1.0"

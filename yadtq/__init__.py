"""YADTQ: a distributed task queue with Kafka as the broker and Redis as the result backend."""

from yadtq.client.async_client import AsyncYADTQ
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import (
                          BackendUnavailable,
                          BrokerUnavailable,
                          ConfigError,
                          ConnectError,
                          MessageError,
                          ResultTimeout,
                          TaskArgumentError,
                          TaskCancelled,
                          TaskError,
                          TaskFailed,
                          TaskNotFound,
                          TimeLimitExceeded,
                          UnknownTask,
                          YADTQError,
)
from yadtq.store.backend import Backend, TaskRecord
from yadtq.store.live_state import LiveState
from yadtq.task import builtins as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from yadtq.task.canvas import Signature, chain, chord, group, signature
from yadtq.task.messages import TaskMessage
from yadtq.task.outcomes import Fail, Retry
from yadtq.task.periodic import periodic
from yadtq.task.registry import Registry, current_task, registry, task
from yadtq.task.status import Status
from yadtq.worker.middleware import Middleware

__all__ = [
                          "YADTQ",
                          "AsyncYADTQ",
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
                          "Signature",
                          "Status",
                          "TaskArgumentError",
                          "TaskCancelled",
                          "TaskError",
                          "TaskFailed",
                          "TaskMessage",
                          "TaskNotFound",
                          "TaskRecord",
                          "TimeLimitExceeded",
                          "UnknownTask",
                          "YADTQError",
                          "chain",
                          "chord",
                          "current_task",
                          "group",
                          "periodic",
                          "registry",
                          "signature",
                          "task",
]
__version__ = "0.1.0"

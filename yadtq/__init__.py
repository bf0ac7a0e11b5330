"""YADTQ: a distributed task queue with Kafka as the broker and Redis as the result backend."""

import importlib
from typing import TYPE_CHECKING, Any

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
from yadtq.task import builtins as _builtin_tasks  # noqa: F401  (registers the built-in tasks)
from yadtq.task.canvas import Signature, chain, chord, group, signature
from yadtq.task.outcomes import Fail, Retry
from yadtq.task.periodic import periodic
from yadtq.task.registry import Registry, current_task, registry, task
from yadtq.task.status import Status

if TYPE_CHECKING:
    from yadtq.client.async_client import AsyncYADTQ
    from yadtq.client.client import YADTQ
    from yadtq.store.backend import Backend, TaskRecord
    from yadtq.store.live_state import LiveState
    from yadtq.task.messages import TaskMessage
    from yadtq.worker.middleware import Middleware

# Imported at their first use, not with the package (PEP 562): they bring kafka-python and redis
# (about 1 s of CPU), which `yadtq wait`, `yadtq run` and `yadtq services` never use; `make run`
# starts a dozen such processes at once on a cold machine.
_LAZY = {"YADTQ": "yadtq.client.client", "AsyncYADTQ": "yadtq.client.async_client",
         "Backend": "yadtq.store.backend", "TaskRecord": "yadtq.store.backend", "LiveState": "yadtq.store.live_state",
         "TaskMessage": "yadtq.task.messages", "Middleware": "yadtq.worker.middleware"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'yadtq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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

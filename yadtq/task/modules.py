"""Loading the task functions a process serves: the built-ins, then the user's modules."""

from __future__ import annotations

import importlib

import yadtq.task.builtins  # noqa: F401  (registers the built-ins)
from yadtq.errors import ConfigError


def load_task_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import modules whose `@task` functions join the default registry."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"cannot import task module {mod!r}: {exc}") from None

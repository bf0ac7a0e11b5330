"""The HTTP API (FastAPI) and Prometheus metrics: `yadtq api`."""

from yadtq.api.app import create_app
from yadtq.api.server import bind_address, serve

__all__ = ["bind_address", "create_app", "serve"]

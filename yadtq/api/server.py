"""`yadtq api`: serves the HTTP API with uvicorn at `Settings.api_address`.

Without `YADTQ_API_TOKEN` the API has no guard, so it binds to loopback only,
whatever address was asked for, and says so at start.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable

from yadtq.config import Settings
from yadtq.errors import ConfigError

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


def bind_address(settings: Settings) -> tuple[str, int, str | None]:
    """(host, port, warning): the address to listen on, and why it differs from the one asked, if it does."""
    host, sep, port_text = settings.api_address.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 < port < 65536:
        raise ConfigError(f"api_address must be HOST:PORT, got {settings.api_address!r}")
    if settings.api_token or _loopback(host):
        return host, port, None
    return LOOPBACK, port, (f"no YADTQ_API_TOKEN set: the API is unguarded, so it listens on {LOOPBACK}:{port} "
                            f"only, not {host}:{port}; set a token to serve other hosts")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Runs until interrupted (SIGINT/SIGTERM end it cleanly)."""
    import uvicorn

    from yadtq.api.app import create_app

    host, port, warning = bind_address(settings)
    if warning:
        say(f"warning: {warning}")
    app = create_app(settings)
    guard = "bearer token required" if settings.api_token else "no token (loopback only)"
    say(f"YADTQ API on http://{host}:{port} ({guard}); OpenAPI at http://{host}:{port}/docs")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)

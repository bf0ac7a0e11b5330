"""`yadtq api`: serves the HTTP API with uvicorn at `Settings.api_address`.

Without `YADTQ_API_TOKEN` the API has no guard, so it binds to loopback only,
whatever address was asked for, and says so at start. The socket is bound
before anything is printed, so a taken address (a YADTQ API already running
there, as `make run` starts one) is one line and exit 3, never a banner
followed by uvicorn's traceback.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Callable

from yadtq.config import Settings
from yadtq.errors import AddressInUse, ConfigError

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


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); raises `AddressInUse` saying who holds a taken one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)  # SO_REUSEADDR, as uvicorn binds
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        there = url(host, port)
        if running_api(host, port):
            raise AddressInUse(there, f"a YADTQ API is already running at {there} (OpenAPI at {there}/docs); "
                                      "use it, or start another with --address HOST:PORT") from None
        raise AddressInUse(there, f"{host}:{port} is taken by another program (not a YADTQ API); "
                                  "choose a free one with --address HOST:PORT or YADTQ_API_ADDRESS") from None


def running_api(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a YADTQ API answers at (host, port): its unguarded /health names redis and auth."""
    if host in ("0.0.0.0", "::"):  # listening on every interface: ask over loopback
        host = "::1" if host == "::" else LOOPBACK
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
    try:
        with direct.open(f"{url(host, port)}/health", timeout=timeout) as reply:
            body = json.loads(reply.read())
    except urllib.error.HTTPError as exc:  # 503: it answers, with Redis down
        try:
            body = json.loads(exc.read())
        except ValueError:
            return False
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and {"status", "redis", "auth"} <= body.keys()


def serve(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Runs until interrupted (SIGINT/SIGTERM end it cleanly)."""
    import uvicorn

    from yadtq.api.app import create_app

    host, port, warning = bind_address(settings)
    sock = listen(host, port)
    try:
        if warning:
            say(f"warning: {warning}")
        app = create_app(settings)
        guard = "bearer token required" if settings.api_token else "no token (loopback only)"
        say(f"YADTQ API on {url(host, port)} ({guard}); OpenAPI at {url(host, port)}/docs")
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        server.run(sockets=[sock])
    finally:
        sock.close()

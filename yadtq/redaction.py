"""How a URL is shown: with any password replaced, wherever it is printed or logged.

A module of its own, below both settings and errors, since both show URLs.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """`url` with any password (and user name) replaced by `***`: the one way every URL is shown.

    Works on comma-separated lists (Kafka bootstrap addresses) and on text that
    is not a URL at all (returned as is, unless it has a `user:pass@` part).
    """
    if "," in url:
        return ",".join(redact_url(part) for part in url.split(","))
    if "@" not in url:
        return url
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "***"
    redacted = urlunsplit((parts.scheme, f"***@{host}", parts.path, "", ""))
    return redacted if "://" in url else redacted.removeprefix("//")

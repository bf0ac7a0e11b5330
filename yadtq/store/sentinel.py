"""Redis behind Sentinel: the `redis+sentinel://` URL and the client that follows the primary.

    redis+sentinel://[[user]:password@]host1:port1,host2:port2,.../MASTER[/DB][?options]

The hosts are Sentinels (not Redis servers); MASTER is the name they monitor
(`sentinel monitor MASTER ...`). The password, if any, is the data servers';
options in the query:

- `sentinel_password=...`: the Sentinels' own password, when they have one;
- `replicas_ack=N` (default 1): a worker step (its outcomes and claims) is
  followed by `WAIT N` in the same round trip, so an outcome is on N replicas
  before the worker acts on it; `0` turns that off;
- `ack_timeout_ms=T` (default 1000): how long a step waits for those replicas.
  A step whose replicas do not answer in time still counts (the primary holds it):
  YADTQ keeps running with a replica down, and logs that its steps are unreplicated.

The client comes from redis-py's Sentinel: every new connection asks the
Sentinels where the primary is; a connection to a primary that was demoted gets
READONLY, which redis-py turns into a ConnectionError, the same error as an
outage, so every caller that waits an outage out follows a failover too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote

import redis
from redis.sentinel import Sentinel

from yadtq.errors import ConfigError

SCHEME = "redis+sentinel"
URL_FORM = f"{SCHEME}://[[user]:password@]host:port[,host:port...]/MASTER[/DB][?replicas_ack=1&ack_timeout_ms=1000]"
DEFAULT_REPLICAS_ACK = 1
DEFAULT_ACK_TIMEOUT_MS = 1000


@dataclass(frozen=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    replicas_ack: int = DEFAULT_REPLICAS_ACK
    ack_timeout_ms: int = DEFAULT_ACK_TIMEOUT_MS


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(f"{SCHEME}://")


def _bad(why: str) -> ConfigError:
    # Never quote the URL: it may hold a password.
    return ConfigError(f"YADTQ_REDIS_URL is not a valid Sentinel URL ({why}); expected {URL_FORM}")


def host_port(part: str) -> tuple[str, int] | None:
    """`host:port` or `[IPv6]:port` of a Redis URL's node list, or None when it is neither
    (the caller names the URL in its error; the Redis Cluster URL reads its nodes with this too)."""
    if part.startswith("["):  # [IPv6]:port
        host, _, port = part[1:].partition("]:")
    else:
        host, _, port = part.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _host_port(part: str) -> tuple[str, int]:
    node = host_port(part)
    if node is None:
        raise _bad(f"each Sentinel is host:port, got {part!r}")
    return node


def _int_option(options: dict[str, list[str]], name: str, default: int) -> int:
    raw = options.get(name, [str(default)])[-1]
    if not raw.isdigit():
        raise _bad(f"{name} must be a whole number >= 0, got {raw!r}")
    return int(raw)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The Sentinels, master name, db and options of `url`; raises ConfigError when malformed."""
    if not is_sentinel_url(url):
        raise _bad(f"the scheme must be {SCHEME}")
    rest = url[len(SCHEME) + 3:]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) if has_password else None
    if not hosts:
        raise _bad("no Sentinel address")
    sentinels = tuple(_host_port(p) for p in hosts.split(",") if p)
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise _bad("the path must be /MASTER or /MASTER/DB")
    if len(parts) == 2 and not parts[1].isdigit():
        raise _bad(f"the database must be a number, got {parts[1]!r}")
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - {"sentinel_password", "replicas_ack", "ack_timeout_ms"}
    if unknown:
        raise _bad(f"unknown option(s) {', '.join(sorted(unknown))}")
    return SentinelTarget(
        sentinels=sentinels, master=unquote(parts[0]), db=int(parts[1]) if len(parts) == 2 else 0,
        username=username, password=password,
        sentinel_password=options.get("sentinel_password", [None])[-1],
        replicas_ack=_int_option(options, "replicas_ack", DEFAULT_REPLICAS_ACK),
        ack_timeout_ms=_int_option(options, "ack_timeout_ms", DEFAULT_ACK_TIMEOUT_MS),
    )


def sentinel_client(target: SentinelTarget, **connection: Any) -> redis.Redis:
    """A client of `target`'s current primary; `connection` holds redis.Redis's connection options.

    The Sentinels are asked with the same socket timeouts, so a Sentinel that is
    down or stalled costs at most that before the next one is tried.
    """
    timeout = connection.get("socket_timeout") or connection.get("socket_connect_timeout") or 2.0
    asking = {"socket_connect_timeout": connection.get("socket_connect_timeout", timeout),
              "socket_timeout": timeout, "password": target.sentinel_password}
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=asking)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.master, db=target.db, username=target.username, password=target.password, **connection)
    return client


def sentinels_ready(target: SentinelTarget, timeout: float = 2.0) -> tuple[bool, str]:
    """(True, "") once every Sentinel knows the primary, a replica in sync, and the other Sentinels:
    a failover can happen from then on. (False, why) before."""
    for host, port in target.sentinels:
        client = redis.Redis(host=host, port=port, password=target.sentinel_password,
                             socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True)
        try:
            state = cast("dict[str, Any]", client.sentinel_master(target.master))
            replicas = client.sentinel_slaves(target.master)
        except redis.RedisError as exc:
            return False, f"Sentinel {host}:{port}: {exc}"
        finally:
            client.close()
        synced = [r for r in replicas if r.get("master-link-status") == "ok" and not r.get("is_sdown")]
        if not synced:
            return False, f"Sentinel {host}:{port} knows no replica in sync yet"
        if int(state.get("num-other-sentinels", 0)) < len(target.sentinels) - 1:
            return False, f"Sentinel {host}:{port} does not know the other Sentinels yet"
    # The Sentinels read a replica's state every 10 s: one that just came back may still read as in
    # sync from before. The primary knows at once.
    found = primary_address(target, timeout)
    if found is None:
        return False, "no Sentinel names the primary"
    primary = redis.Redis(host=found[0], port=found[1], username=target.username, password=target.password,
                          socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True)
    try:
        if online_replicas(primary.info("replication")) == 0:
            return False, "the primary has no replica in sync yet"
    except redis.RedisError as exc:
        return False, f"the primary {found[0]}:{found[1]}: {exc}"
    finally:
        primary.close()
    return True, ""


def online_replicas(info: dict[str, Any]) -> int:
    """The replicas in an INFO replication reply that are online. A replica still receiving its
    first copy (state wait_bgsave or send_bulk; seconds after a failover or a restart) counts as
    connected but acknowledges nothing: a WAIT for it would cost every step its whole timeout."""
    return sum(1 for key, value in info.items()
               if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online")


def down_after_s(target: SentinelTarget, timeout: float = 2.0) -> float | None:
    """How long the Sentinels wait without an answer before they declare the primary down (the
    first that answers; their `down-after-milliseconds`), in seconds; None when none answers."""
    for host, port in target.sentinels:
        client = redis.Redis(host=host, port=port, password=target.sentinel_password,
                             socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True)
        try:
            state = cast("dict[str, Any]", client.sentinel_master(target.master))
        except redis.RedisError:
            continue
        finally:
            client.close()
        if "down-after-milliseconds" in state:
            return int(state["down-after-milliseconds"]) / 1000
    return None


def primary_address(target: SentinelTarget, timeout: float = 2.0) -> tuple[str, int] | None:
    """Where the Sentinels say the primary is now (the first that answers), or None."""
    for host, port in target.sentinels:
        client = redis.Redis(host=host, port=port, password=target.sentinel_password,
                             socket_connect_timeout=timeout, socket_timeout=timeout, decode_responses=True)
        try:
            got = client.sentinel_get_master_addr_by_name(target.master)
        except redis.RedisError:
            continue
        finally:
            client.close()
        if isinstance(got, (tuple, list)) and got:
            return str(got[0]), int(got[1])
    return None

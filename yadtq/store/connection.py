"""The Redis connection and its errors: the only door to redis-py for the rest of YADTQ.

Code outside `yadtq.store` never imports `redis`: it gets a client from
`connect_redis`, names its type `RedisClient`, and catches the errors below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from yadtq.config import Settings
from yadtq.errors import BackendUnavailable, ConfigError
from yadtq.redaction import redact_url
from yadtq.store.cluster import cluster_client, is_cluster_url, parse_cluster_url
from yadtq.store.command_packer import packer_option
from yadtq.store.sentinel import is_sentinel_url, parse_sentinel_url, sentinel_client

RedisClient = redis.Redis
RedisError = redis.RedisError
WatchError = redis.WatchError
# Redis is away: down, restarting, unreachable, stalled past the socket timeout, or still loading
# its data (BusyLoadingError, a ConnectionError). A caller that waits an outage out catches these.
# On a Redis Cluster, a node that is away shows as more than a lost connection: the others answer
# CLUSTERDOWN while they count it failed, a primary just restarted answers CLUSTERDOWN for its first
# seconds, TRYAGAIN comes while a slot moves, and redis-py raises ClusterError once its redirections
# ran out, SlotNotCoveredError while its map of slots has a hole. All of them pass like an outage: a
# worker that took them for a broken step dropped its claims, and a chaos run with a primary restarted
# lost every task (docs/redis-cluster.md).
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError,
                                                  redis.BusyLoadingError, redis.exceptions.ClusterError,
                                                  redis.exceptions.TryAgainError,
                                                  redis.exceptions.SlotNotCoveredError)


# 0.1 + 0.2 + 0.4 + 0.8 s, then 1 s apart: about 15 s, several times a local failover (3 to 4 s).
FAILOVER_RETRIES = 18


def connect_redis(settings: Settings, *, socket_timeout: float | None = None,
                  retries: int | None = None) -> redis.Redis:
    """A client for `settings.redis_url`; raises `BackendUnavailable` if it does not answer.

    `socket_timeout` bounds every command (the worker's loop must not hang on a
    stalled Redis); `retries=0` turns off redis-py's own retries, for a caller
    that handles outages itself.
    """
    extra: dict[str, Any] = {}
    if retries is not None:
        extra["retry"] = Retry(NoBackoff(), retries)
    elif is_sentinel_url(settings.redis_url):
        # Behind Sentinel an outage is usually a failover, over in seconds: a command rides it out
        # (each retry asks the Sentinels afresh) instead of failing a submit or an API request.
        extra["retry"] = Retry(ExponentialBackoff(cap=1.0, base=0.05), FAILOVER_RETRIES)
    options: dict[str, Any] = dict(
        decode_responses=True, socket_connect_timeout=settings.connect_timeout, socket_keepalive=True,
        socket_timeout=socket_timeout, health_check_interval=30,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError], **packer_option(), **extra)
    try:
        client = _client(settings.redis_url, options)
    except (ValueError, TypeError):
        # The parser's message may quote the URL, password and all.
        raise ConfigError("YADTQ_REDIS_URL is not a valid Redis URL "
                          "(redis[s]://[[user]:password@]host[:port][/db])") from None
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        client.close()
        raise BackendUnavailable(settings.redis_url, redact_url(str(exc).splitlines()[0])) from None
    return client


def _client(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client for `url`: a plain Redis URL, a `redis+sentinel://` one (the current primary),
    or a `redis+cluster://` one (yadtq.store.cluster)."""
    if is_cluster_url(url):
        return cluster_client(parse_cluster_url(url), **options)
    if is_sentinel_url(url):
        return sentinel_client(parse_sentinel_url(url), **options)
    return redis.Redis.from_url(url, **options)


def redis_ready(settings: Settings) -> tuple[bool, str]:
    """(True, "") once Redis answers PING; (False, why) while it does not, or is still loading its data."""
    client = _client(settings.redis_url, {"socket_connect_timeout": 1.0, "socket_timeout": 2.0})
    try:
        client.ping()
        return True, ""
    except redis.BusyLoadingError:
        try:
            done = client.info("persistence").get("loading_loaded_perc")
        except redis.RedisError:
            done = None
        return False, "loading its data into memory" + (f" ({float(done):.0f}%)" if done is not None else "")
    except redis.RedisError as exc:
        return False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        client.close()


def answers_ping(client: redis.Redis) -> bool:
    """True when `client`'s Redis answers PING now (a health check: never raises)."""
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


# connect_redis() sets decode_responses=True, so every reply holds str; redis-py types
# replies `bytes | str` whatever the client, so reads narrow them with these two.
def decoded_list(reply: Sequence[object]) -> list[str]:
    """A list reply (LRANGE, ZRANGE without scores) of a `connect_redis()` client."""
    return cast("list[str]", reply)


def decoded_hash(reply: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """An HGETALL reply of a `connect_redis()` client."""
    return cast("dict[str, str]", reply)

"""Settings: one validated object, built at the edge from `YADTQ_*` env vars.

Library code takes a `Settings` as an argument and never reads `os.environ`
itself; the CLI, the farm and the dashboard build one with `Settings.from_env`
and apply their flags over it with `replace`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yadtq.errors import ConfigError
from yadtq.redaction import redact_url

# Settings whose values are never shown (repr, errors, logs); URLs are shown redacted.
SECRET_SETTINGS = ("control_token", "api_token", "dashboard_password")
URL_SETTINGS = ("redis_url", "kafka_bootstrap", "dashboard_api")
# Option names in YADTQ_KAFKA_OPTIONS whose values are secrets (SASL, TLS key passwords, tokens).
_SECRET_WORDS = ("password", "secret", "token", "key", "credential", "jaas")


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    topic: str = "tasks"
    # Named queues a worker serves, in priority order ("high,default,low"; "high:5,low:1" weighs
    # them instead); empty: the default queue only. Parsed by yadtq.task.queues.
    queues: str = ""
    partitions: int = 4
    group: str = "workers"
    prefix: str = "yadtq:"
    heartbeat_topic: str = "yadtq-heartbeats"
    heartbeat_interval: float = 5.0
    dead_after: float = 15.0
    tries: int = 3
    retry_backoff: float = 1.0
    retry_backoff_max: float = 60.0
    time_limit: float = 0.0
    lease: float = 10.0
    # Retention (store/retention.py): seconds a finished record is kept, then swept from Redis with
    # every index entry; failed tasks and dead letters are kept `failed_ttl`. 0 keeps them forever.
    result_ttl: float = 86_400.0
    failed_ttl: float = 7 * 86_400.0
    sweep_interval: float = 5.0  # seconds between retention sweeps, farm-wide
    # Delayed tasks are published this many seconds before their eta, so a burst due at once is on
    # the broker by then; a worker holds one that comes early and claims it at its eta.
    schedule_lead: float = 2.0
    # The monitor republishes tasks `queued` for longer than this (their message
    # may be gone with a memory-only broker's restart); 0 turns it off.
    requeue_stale_after: float = 120.0
    max_message_bytes: int = 1_048_576
    log_dir: str = "logs"
    data_dir: str = "data"
    # Kafka client timings. docs/brokers.md: with kafka-python's defaults the
    # first records arrive after ~23 s. The session timeout: 0 is the broker's
    # default (yadtq/broker/session.py: 4 s on the embedded broker, which holds a
    # group's join for half of it; 6 s, Apache Kafka's lowest, elsewhere).
    session_timeout_ms: int = 0
    heartbeat_interval_ms: int = 1000
    max_poll_interval_ms: int = 30_000
    fetch_max_wait_ms: int = 20
    # The fetch wait of an idle worker (yadtq/broker/fetch_wait.py); 0: the broker's (500 ms on a broker
    # that answers a fetch as soon as a record arrives, fetch_max_wait_ms on the embedded broker).
    idle_fetch_wait_ms: int = 0
    max_poll_records: int = 1000
    # Static group membership (KIP-345): a worker joins the group under its name, so one that restarts
    # within the session timeout gets its partitions back with no rebalance of the others. auto: on,
    # except on the embedded broker (its static membership is broken); on | off force it. Off by
    # default: under a kill every few seconds the restarted member gets the same suspect task back
    # at once, so one worker's repeated deaths can quarantine a task that is not at fault.
    static_membership: str = "off"
    # The engine (issue 9): tasks run at once in one worker process, records
    # buffered per partition past its lowest unfinished one before it is paused.
    concurrency: int = 8
    max_buffered: int = 1000
    # Records a worker claims beyond its free slots while its tasks run short (yadtq/worker/claim_ahead.py).
    claim_ahead: int = 8
    # Robustness (issue 10): runs cut off by a worker's death before a task is
    # quarantined; seconds a task may ignore its time limit before its worker is
    # ended; when a running task with no limit is flagged; result size cap; the
    # token an `end` control message must carry when set.
    max_lost_runs: int = 3
    time_limit_grace: float = 5.0
    warn_running_after: float = 300.0
    max_result_bytes: int = 1_048_576
    control_token: str = ""
    # Which broker `yadtq services` starts (embedded | kafka), and the topic
    # settings YADTQ creates its topics with (0: fit to the cluster found).
    broker: str = "embedded"
    replication_factor: int = 0
    min_insync_replicas: int = 0
    # HTTP API (issue 13).
    api_address: str = "127.0.0.1:8000"
    api_token: str = ""
    linger_ms: int = 5
    connect_timeout: float = 5.0
    # Seconds a starting worker (and the farm) waits for the broker and Redis to serve before giving up;
    # 0 gives up at once. `yadtq run` starts the farm with 60 while the services come up.
    service_wait: float = 0.0
    # How long a submit waits for the broker to take its messages: long enough to ride through a
    # Kafka leader election (a node stopped or killed in a rolling restart), then BrokerUnavailable.
    publish_timeout: float = 60.0
    # Extra kafka-python options (SASL/TLS for a real cluster), as JSON.
    kafka_options: Mapping[str, Any] = field(default_factory=dict)
    # Dashboard: refresh period, when dead workers leave the live view (they
    # stay in the failure history), an optional password, destructive actions.
    dashboard_refresh: float = 1.5
    dashboard_prune_after: float = 300.0
    dashboard_password: str = ""
    dashboard_allow_destructive: bool = False
    dashboard_tasks: str = ""  # comma-separated task modules whose tasks the submit form offers
    # The HTTP API the dashboard reads and acts through instead of Redis and the broker
    # (http://host:8000; it sends `api_token` as its bearer token). Empty: Redis, as before.
    dashboard_api: str = ""
    heartbeat_history: int = 10_000
    # Live results: the least time between two progress writes of one task (the latest value always
    # lands), and how often a waiter re-reads a record besides waking on its announcements.
    progress_interval: float = 0.25
    result_poll: float = 1.0
    series_points: int = 3_600
    series_interval: float = 1.0

    def __post_init__(self) -> None:
        positive = (
            "partitions", "heartbeat_interval", "dead_after", "tries", "lease",
            "max_message_bytes", "heartbeat_interval_ms",
            "max_poll_interval_ms", "max_poll_records", "connect_timeout", "publish_timeout",
            "heartbeat_history", "series_points", "series_interval", "dashboard_refresh",
            "concurrency", "max_buffered", "max_lost_runs", "max_result_bytes", "sweep_interval",
            "progress_interval", "result_poll",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("retry_backoff", "retry_backoff_max", "time_limit", "result_ttl", "failed_ttl", "schedule_lead",
                     "fetch_max_wait_ms", "idle_fetch_wait_ms", "linger_ms", "dashboard_prune_after",
                     "requeue_stale_after", "time_limit_grace", "warn_running_after", "replication_factor",
                     "min_insync_replicas", "service_wait", "session_timeout_ms", "claim_ahead"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if self.static_membership not in ("auto", "on", "off"):
            raise ConfigError(f"static_membership must be 'auto', 'on' or 'off', got {self.static_membership!r}")
        if self.broker not in ("embedded", "kafka"):
            raise ConfigError(f"broker must be 'embedded' or 'kafka', got {self.broker!r}")
        if not self.topic or not self.prefix:
            raise ConfigError("topic and prefix must not be empty")

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({shown})"

    def redacted(self) -> dict[str, Any]:
        """Every setting, safe to print: secrets masked, URLs without their passwords."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_SETTINGS and value:
                value = "***"
            elif f.name in URL_SETTINGS:
                value = redact_url(value)
            elif f.name == "kafka_options":
                value = redact_options(value)
            out[f.name] = value
        return out

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    def topic_for(self, queue: str | None) -> str:
        """The Kafka topic of a named queue: the default queue keeps `topic`, queue "email" is
        `<topic>.email`. The one place a queue's topic is derived."""
        return self.topic if not queue or queue == DEFAULT_QUEUE else f"{self.topic}.{queue}"

    def dlq_topic_for(self, queue: str | None) -> str:
        """The dead-letter topic of a named queue (`dlq_topic` for the default queue)."""
        return f"{self.topic_for(queue)}.dlq"

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied; `None` values are ignored (unset flags)."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **given)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build from `YADTQ_<NAME>` variables (e.g. `YADTQ_REDIS_URL`), then `overrides`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, f.default if f.default is not dataclasses.MISSING else {})
        return cls(**values).replace(**overrides)

    def env(self) -> dict[str, str]:
        """These settings as `YADTQ_*` variables: how the farm hands them to children."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[ENV_PREFIX + f.name.upper()] = json.dumps(dict(value)) if f.name == "kafka_options" else str(value)
        return out


ENV_PREFIX = "YADTQ_"
# The queue of a task that names none; its topic is `Settings.topic`, as before queues existed.
DEFAULT_QUEUE = "default"


def _parse(name: str, raw: str, default: Any) -> Any:
    """One variable's value. Errors name the variable and what it must be, never the value:
    YADTQ_KAFKA_OPTIONS carries SASL passwords, YADTQ_REDIS_URL may carry one."""
    var = ENV_PREFIX + name.upper()
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{var} must be an integer") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{var} must be a number") from None
    if isinstance(default, Mapping):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise ConfigError(f"{var} must be a JSON object: not valid JSON{where}") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"{var} must be a JSON object, got a JSON {type(parsed).__name__}")
        return parsed
    return raw


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Kafka client options safe to print: values of secret-looking options masked."""
    return {k: "***" if any(w in k.lower() for w in _SECRET_WORDS) else v for k, v in dict(options).items()}

"""The consumer group's session timeout: `YADTQ_SESSION_TIMEOUT_MS`, or, at 0 (the default), the broker's.

The session timeout is how long a dead worker's partitions wait before they move, and on the
embedded broker (tansu 0.6) also how long a group's join is held: it answers a JoinGroup only
once half of the first member's session timeout has passed (tansu's group administrator,
`join()`; no setting changes it). So the default follows the broker:

* the embedded broker, which names its cluster `tansu_cluster`: 4 s (a join held 2 s, a new
  farm serving about 2 s sooner than at 6 s, a dead worker's partitions moving 2 s sooner);
* any other broker: 6 s, Apache Kafka's lowest by default (`group.min.session.timeout.ms`),
  so a worker is never refused on a cluster left at its defaults.

Windows computed without asking the broker (the monitor's rescan after a broker restart) use
the longer of the two (`longest_session_s`).
"""

from __future__ import annotations

import logging

from kafka.errors import KafkaError

from yadtq.broker.clients import KAFKA_SESSION_MS, make_admin
from yadtq.config import Settings

log = logging.getLogger(__name__)

EMBEDDED_CLUSTER_ID = "tansu_cluster"
EMBEDDED_SESSION_MS = 4_000


def cluster_id(settings: Settings) -> str:
    """The broker's cluster id ("" when it cannot be read). Raises `BrokerUnavailable` like any client."""
    admin = make_admin(settings)
    try:
        return str(admin.describe_cluster().get("cluster_id") or "")
    except KafkaError as exc:
        log.warning("cluster id unreadable (%s)", exc)
        return ""
    finally:
        admin.close()


def session_timeout_ms(settings: Settings) -> int:
    """The session timeout a worker joins with: the setting, or the broker's default when it is 0."""
    if settings.session_timeout_ms:
        return settings.session_timeout_ms
    return EMBEDDED_SESSION_MS if cluster_id(settings) == EMBEDDED_CLUSTER_ID else KAFKA_SESSION_MS


def longest_session_s(settings: Settings) -> float:
    """The session timeout in seconds, without asking the broker: the setting, or the longest default."""
    return (settings.session_timeout_ms or max(EMBEDDED_SESSION_MS, KAFKA_SESSION_MS)) / 1000

"""How long a worker's fetch may wait at the broker for records: short while the engine is
busy, long while it is idle, on a broker that answers a waiting fetch as soon as a record arrives.

A waiting fetch costs a worker a round of wake-ups each time it expires: at the busy wait
(`fetch_max_wait_ms`, 20 ms) an idle worker woke its threads about 500 times a second and used
6 % of a core doing nothing, and on a shared 2-core machine that CPU is taken from the tasks'
own path (submit, claim, outcome): at 100 tasks/s on Apache Kafka, 2 workers, p50/p99 went from
about 9/65 ms to 5/23 ms with a 500 ms idle wait (interleaved runs, load 3-4).

A long wait costs nothing on a broker that answers at once (Apache Kafka: `fetch.min.bytes` 1),
but kafka-python keeps one fetch in flight per broker: a partition sought back or newly assigned
is fetched only when the fetch in flight returns. So the long wait is used only for fetches sent
while the worker is idle (the loop polls with a timeout only when it has nothing to start), and a
busy worker, whose seeks must not wait, fetches with the short one.

The embedded broker (tansu) holds every fetch for its whole wait even when a record arrives, so
there the idle wait is the busy one.
"""

from __future__ import annotations

from yadtq.broker.session import EMBEDDED_CLUSTER_ID, cluster_id
from yadtq.config import Settings

# Apache Kafka's own default `fetch.max.wait.ms`.
KAFKA_IDLE_FETCH_WAIT_MS = 500


def idle_fetch_wait_ms(settings: Settings, cluster: str | None = None) -> int:
    """The wait of a fetch sent while the worker is idle: the setting, or at 0 (the default) the
    broker's: `fetch_max_wait_ms` on the embedded broker, 500 ms on any other. `cluster`: the
    broker's cluster id when already read (None: read it now)."""
    if settings.idle_fetch_wait_ms:
        return max(settings.idle_fetch_wait_ms, settings.fetch_max_wait_ms)
    cluster = cluster_id(settings) if cluster is None else cluster
    return settings.fetch_max_wait_ms if cluster == EMBEDDED_CLUSTER_ID else KAFKA_IDLE_FETCH_WAIT_MS

"""Workaround for kafka-python 3.0.12's producer spinning on a leader its metadata no longer lists.

When a broker is killed while it leads a partition, the producer may hold metadata that names the
dead broker as the partition's leader but no longer lists it among the brokers. Its I/O thread then
asks to connect to that leader for a pending batch, and the connect raises `UnknownBrokerIdError`
(kafka-python catches only `NodeNotReadyError` there). The error leaves `Sender.run_once` before
its network poll, which is where fresh metadata would come in, and `Sender.run` logs it and calls
`run_once` again at once: a loop that burns a core, and never ends, since nothing asks for the
metadata that would end it. A 3-node cluster test met it after a coordinator's kill (half a million
tracebacks from one producer), and a producer closed in the background (`close_producer`) loops the
same way.

`guard_sender` makes such a turn ask for fresh metadata and serve the network for the producer's
`retry_backoff_ms` instead, as kafka-python does for a leader it cannot reach. It
reads kafka-python's private sender (pinned in requirements.txt); without it, it does nothing.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.errors import UnknownBrokerIdError


def guard_sender(producer: Any) -> bool:
    """Makes `producer`'s I/O thread wait for fresh metadata after an `UnknownBrokerIdError`
    rather than try again at once; whether it could."""
    sender: Any = getattr(producer, "_sender", None)
    run_once = getattr(sender, "run_once", None)
    client = getattr(sender, "_client", None)
    cluster = getattr(producer, "_metadata", None)
    if run_once is None or client is None or cluster is None:
        return False
    backoff_ms = int(getattr(producer, "config", {}).get("retry_backoff_ms", 100))

    def run_once_or_wait_for_metadata() -> None:
        try:
            run_once()
        except UnknownBrokerIdError:
            cluster.request_update()
            # The poll serves the network (the metadata's answer among it) and may return early: the
            # turn lasts the whole backoff, so the connect is tried again at that pace at most.
            deadline = time.monotonic() + backoff_ms / 1000
            while (left := deadline - time.monotonic()) > 0:
                client.poll(timeout_ms=max(1, int(left * 1000)))

    # The thread looks the method up on each turn, so this takes effect from its next turn on.
    sender.run_once = run_once_or_wait_for_metadata
    return True

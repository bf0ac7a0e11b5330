"""Workaround for kafka-python 3.0.12 never fetching again from a node it once failed to reach.

The fetcher marks a node as having a fetch in flight before it sends, and clears the mark when
the fetch's future completes. When the node is missing from the metadata it holds (a broker
killed while it led a partition: the metadata lists the partition's leader but no longer the
broker), the send raises `UnknownBrokerIdError` out of `poll` instead of failing a future, so
the mark is never cleared. From then on every partition that node leads is skipped ("a fetch is
pending") without a word: its tasks wait until the metadata names another leader, and for ever
once the node comes back and leads again. Nothing else refreshes the metadata meanwhile, since no
fetch fails.

`forget_unsent_fetch` clears the mark of the node such an error names, closes its fetch session
as kafka-python does for a failed fetch, and asks for fresh metadata. It is safe whatever raised
the error: kafka-python raises it only when it holds no connection to the node, and a fetch in
flight needs one. It reads kafka-python's private fetcher state (pinned in requirements.txt);
without it, it does nothing. tests/system/test_unsent_fetches.py injects the failed send in a
real client; the 3-node cluster tests (tests/system/test_kafka_cluster.py) met it for real.
"""

from __future__ import annotations

from typing import Any

from kafka.errors import UnknownBrokerIdError


def forget_unsent_fetch(consumer: Any, exc: BaseException) -> bool:
    """After `consumer.poll` raised `exc`: if it names a node the consumer could not reach, clears
    that node's fetch-in-flight mark and requests a metadata update; whether it did."""
    if not isinstance(exc, UnknownBrokerIdError) or not exc.args:
        return False
    fetcher = getattr(consumer, "_fetcher", None)
    pending = getattr(fetcher, "_nodes_with_pending_fetch_requests", None)
    if not isinstance(pending, set):
        return False
    node = exc.args[0]
    pending.discard(node)
    # As kafka-python does for a fetch that failed: the node's fetch session (if any) starts afresh,
    # since the request that session state counts on was never sent.
    session = (getattr(fetcher, "_session_handlers", None) or {}).get(node)
    if session is not None:
        session.handle_error(exc)
    cluster = getattr(getattr(fetcher, "_manager", None), "cluster", None)
    if cluster is not None:
        cluster.request_update()
    return True

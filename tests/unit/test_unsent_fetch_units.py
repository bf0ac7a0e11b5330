"""The workaround for kafka-python keeping a node marked as fetching after a fetch it could not send
(yadtq.broker.unsent_fetches); tests/system/test_unsent_fetches.py injects the fault in a real client."""

from __future__ import annotations

from types import SimpleNamespace

from kafka.errors import KafkaConnectionError, UnknownBrokerIdError

from yadtq.broker.unsent_fetches import forget_unsent_fetch


def _consumer(pending: set[int], updates: list[int], closed: list[int] | None = None) -> SimpleNamespace:
    cluster = SimpleNamespace(request_update=lambda: updates.append(1))
    sessions = {3: SimpleNamespace(handle_error=lambda exc: (closed if closed is not None else []).append(3))}
    fetcher = SimpleNamespace(_nodes_with_pending_fetch_requests=pending, _session_handlers=sessions,
                              _manager=SimpleNamespace(cluster=cluster))
    return SimpleNamespace(_fetcher=fetcher)


def test_the_node_an_unknown_broker_error_names_is_no_longer_marked_and_the_metadata_is_refreshed() -> None:
    pending, updates, closed = {1, 3}, [], []
    assert forget_unsent_fetch(_consumer(pending, updates, closed), UnknownBrokerIdError(3))
    assert pending == {1} and updates == [1] and closed == [3]  # its fetch session starts afresh
    assert forget_unsent_fetch(_consumer({1}, updates, closed), UnknownBrokerIdError(1))  # a node without a session
    assert closed == [3]


def test_any_other_error_or_a_client_without_that_state_is_left_alone() -> None:
    pending, updates = {1, 3}, []
    assert not forget_unsent_fetch(_consumer(pending, updates), KafkaConnectionError("refused"))
    assert not forget_unsent_fetch(_consumer(pending, updates), UnknownBrokerIdError())
    assert pending == {1, 3} and updates == []
    assert not forget_unsent_fetch(SimpleNamespace(), UnknownBrokerIdError(3))

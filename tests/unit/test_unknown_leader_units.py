"""The workaround for kafka-python's producer spinning on a leader its metadata no longer lists
(yadtq.broker.unknown_leaders); tests/system/test_unknown_leaders.py injects the fault in a real producer."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaConnectionError, UnknownBrokerIdError

from yadtq.broker.unknown_leaders import guard_sender

BACKOFF_MS = 40


def _producer(raises: BaseException | None, updates: list[int], polls: list[int]) -> SimpleNamespace:
    def run_once() -> None:
        if raises is not None:
            raise raises
    def poll(timeout_ms: int) -> None:  # as the network's poll: returns by its timeout at the latest
        polls.append(timeout_ms)
        time.sleep(timeout_ms / 1000 / 2)  # and here earlier, as an answer arriving would make it
    client = SimpleNamespace(poll=poll)
    sender = SimpleNamespace(run_once=run_once, _client=client)
    return SimpleNamespace(_sender=sender, _metadata=SimpleNamespace(request_update=lambda: updates.append(1)),
                           config={"retry_backoff_ms": BACKOFF_MS})


def test_an_unknown_leader_asks_for_metadata_and_waits_out_the_backoff_in_the_poll() -> None:
    updates: list[int] = []
    polls: list[int] = []
    producer = _producer(UnknownBrokerIdError(3), updates, polls)
    assert guard_sender(producer)
    started = time.monotonic()
    producer._sender.run_once()  # the I/O thread's turn: no error out of it
    took = time.monotonic() - started
    assert updates == [1], "no fresh metadata asked for"
    assert polls and BACKOFF_MS - 2 <= polls[0] <= BACKOFF_MS and all(t <= BACKOFF_MS for t in polls), polls
    assert took >= BACKOFF_MS / 1000, f"the turn lasted {took * 1000:.1f} ms: a poll that returns early spins"


def test_a_turn_without_the_error_is_left_as_it_was_and_other_errors_still_reach_the_thread() -> None:
    updates: list[int] = []
    polls: list[int] = []
    quiet = _producer(None, updates, polls)
    assert guard_sender(quiet)
    quiet._sender.run_once()
    assert updates == [] and polls == []
    failing = _producer(KafkaConnectionError("reset"), updates, polls)
    guard_sender(failing)
    with pytest.raises(KafkaConnectionError):  # kafka-python's own handling (it logs and goes on)
        failing._sender.run_once()
    assert updates == [] and polls == []


def test_a_producer_without_that_private_state_is_left_alone() -> None:
    assert not guard_sender(SimpleNamespace())
    assert not guard_sender(SimpleNamespace(_sender=SimpleNamespace(run_once=lambda: None)))

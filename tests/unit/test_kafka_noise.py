"""The kafka-python lines YADTQ's logging drops, and the ones it keeps."""

from __future__ import annotations

import logging
import sys

from yadtq.logs import KafkaNoise


def _task_error(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("kafka.net.selector", logging.ERROR, __file__, 1, "Unhandled exception in task %s:",
                             ("<Task _read_from_sock>",), info)


def test_a_read_pending_on_a_socket_its_client_closed_is_dropped() -> None:
    assert not KafkaNoise().filter(_task_error(ValueError("Invalid file descriptor: -1")))


def test_any_other_unhandled_error_in_a_kafka_task_is_kept() -> None:
    assert KafkaNoise().filter(_task_error(ValueError("Invalid file descriptor: 7")))
    assert KafkaNoise().filter(_task_error(RuntimeError("Invalid file descriptor: -1")))
    assert KafkaNoise().filter(logging.LogRecord("kafka.net.selector", logging.ERROR, __file__, 1,
                                                 "Unhandled exception in task %s:", ("t",), None))

"""Rate and concurrency limits without Redis: how they are written, checked, and how the tracker
lets N tasks of one ordering key start at once."""

from __future__ import annotations

import json
import time

import pytest

from yadtq.errors import ConfigError
from yadtq.task.limits import Limits, parse_rate, stored_form
from yadtq.task.registry import Registry
from yadtq.worker.records import Record, TaskWork, triage
from yadtq.worker.tracker import PartitionTracker


@pytest.mark.parametrize(("text", "count", "period", "interval"), [
    ("100/s", 100, 1, 0.01), ("5/m", 5, 60, 12), ("2/h", 2, 3600, 1800), ("0.5/s", 0.5, 1, 2),
    (" 10 / sec ", 10, 1, 0.1), ("30/min", 30, 60, 2), ("1/hour", 1, 3600, 3600), ("7/S", 7, 1, 1 / 7),
])
def test_rates_are_parsed_into_a_spacing_between_starts(text: str, count: float, period: float,
                                                        interval: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period) == (count, period)
    assert rate.interval == pytest.approx(interval)


@pytest.mark.parametrize("text", ["100", "/s", "0/s", "-1/s", "10/d", "10/ss", "ten/s", "", "1e3/s", "10/s/s"])
def test_malformed_rates_are_refused_with_the_form_to_use(text: str) -> None:
    with pytest.raises(ConfigError, match=r"N/s, N/m or N/h|positive"):
        parse_rate(text)


def test_the_decorator_checks_its_limits_and_keeps_them() -> None:
    reg = Registry()

    @reg.task("mail", rate_limit="10/m", max_concurrency=2, key_concurrency=3)
    def mail() -> None: ...

    assert reg.get("mail").limits == Limits("10/m", 2, 3)
    for bad in ({"rate_limit": "fast"}, {"max_concurrency": 0}, {"key_concurrency": 1.5}, {"max_concurrency": True}):
        with pytest.raises(ConfigError, match="task 'x'"):
            reg.task("x", **bad)(lambda: None)


def test_the_stored_form_carries_the_interval_and_an_explicit_no_limit() -> None:
    assert stored_form({"rate_limit": "4/s", "max_concurrency": 2}) == {"rate_limit": "4/s", "interval": 0.25,
                                                                        "max_concurrency": 2}
    assert stored_form({"rate_limit": None}) == {"rate_limit": None, "interval": None}


def _keyed(reg: Registry, t: PartitionTracker, n: int) -> list[object]:
    out = []
    for i in range(n):
        rec = Record(0, i, b"k", json.dumps({"task-id": f"t{i}", "task": "pair", "args": [], "key": "k"}).encode())
        out.append(t.add(rec, triage(rec, reg, 10_000)))
    return out


def test_key_concurrency_lets_n_tasks_of_one_key_start_in_offset_order() -> None:
    reg = Registry()
    reg.task("pair", key_concurrency=2)(lambda: None)
    reg.task("single")(lambda: None)
    t = PartitionTracker(max_buffered=10)
    t.assign(0)
    entries = _keyed(reg, t, 4)
    first = t.ready(10, time.monotonic(), frozenset())
    assert [e.offset for e in first] == [0, 1]
    assert all(isinstance(e.work, TaskWork) and e.work.key_slots == 2 for e in first)
    for e in first:
        t.start(e)
    assert t.ready(10, time.monotonic(), frozenset()) == []
    t.finish(first[1])  # the second ends first: the third may start, the fourth still waits
    assert [e.offset for e in t.ready(10, time.monotonic(), frozenset())] == [2]
    assert entries[3].wait_reason == "busy key"


def test_the_limits_mix_finds_the_busiest_second() -> None:
    from worker_farm.mixes.limits import most_in_one_second
    assert most_in_one_second([]) == (0, 0.0)
    assert most_in_one_second([5.0, 0.0, 0.5, 0.99, 1.5, 1.6])[0] == 3
    assert most_in_one_second([float(i) / 10 for i in range(25)])[0] == 10

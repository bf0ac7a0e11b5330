"""The task tables' cells stay short enough to be read whole (dashboard/data.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from dashboard.data import first_line, short_time

NOW = datetime(2026, 12, 3, 15, 30, tzinfo=UTC).timestamp()


def test_a_time_of_today_is_the_time_alone_an_older_one_has_its_date() -> None:
    assert short_time(NOW - 90, NOW, UTC) == "15:28:30"
    assert short_time(NOW - 86_400, NOW, UTC) == "2026-12-02 15:30"
    assert short_time(None, NOW, UTC) == ""


def test_an_error_shows_its_first_line_and_says_when_there_is_more() -> None:
    assert first_line("ZeroDivisionError: division by zero") == "ZeroDivisionError: division by zero"
    assert first_line("ValueError: bad\nsecond line\nthird") == "ValueError: bad …"
    assert first_line("\n  RuntimeError: x\n") == "RuntimeError: x"
    assert first_line(None) == "" and len(first_line("E" * 500)) == 200

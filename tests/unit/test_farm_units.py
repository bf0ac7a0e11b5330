"""The farm's command line, without starting a farm: crash seeds and task modules."""

from __future__ import annotations

from worker_farm.__main__ import build_parser, specs_from


def test_crash_seeds_are_per_worker_and_reproducible() -> None:
    args = build_parser().parse_args(["--workers", "3", "--standby", "1", "--crash", "after:3-5"])
    a, b = specs_from(args, 42), specs_from(args, 42)
    assert a == b and len({s.seed for s in a[:3]}) == 3
    assert [s.name for s in a] == ["W1", "W2", "W3", "S1"]
    assert a[3].standby and a[3].crash is None and "--crash" not in a[3].argv()
    assert a[0].argv()[-4:] == ["--crash", "after:3-5", "--seed", str(a[0].seed)]


def test_farm_tasks_take_comma_separated_modules() -> None:
    args = build_parser().parse_args(["--workers", "1", "--tasks", "a.b, c", "--tasks", "d"])
    assert specs_from(args, None)[0].tasks == ("a.b", "c", "d")

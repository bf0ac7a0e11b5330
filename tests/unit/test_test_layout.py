"""The test tree itself: pytest imports test modules by basename (the layers have no
`__init__.py`), so two files of one name in different layers break collection of the whole
run, and only where both are collected in one process (CI's serial part met it)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_name_of_its_own() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert len(names) > 50  # the walk found the layers
    assert [name for name, count in names.items() if count > 1] == []

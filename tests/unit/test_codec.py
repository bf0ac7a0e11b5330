"""yadtq.codec gives what `json` gives, and the quick argument check agrees with the full one.

Property-based: random JSON texts (big integers, floats past the double range, lone
surrogates, non-ASCII, both escaped and not) and random bytes are read by `codec.loads` and by
`json` alone, and must give the same value or the same error; values written by `codec.dumps`
read back as `json.dumps` writes them.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yadtq import codec
from yadtq.errors import TaskArgumentError
from yadtq.task.messages import _strict_loads
from yadtq.task.registry import Task

PROFILE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
scalars = st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**40), max_value=10**40) \
    | st.floats(allow_nan=True, allow_infinity=True) | texts
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=30)


def _outcome(read: Any, raw: bytes) -> tuple[str, Any]:
    try:
        value = read(raw)
    except (ValueError, RecursionError) as exc:
        return "error", (type(exc), str(exc))
    return "value", json.dumps(value, sort_keys=True, allow_nan=True)  # NaN != NaN: compare texts


def _same_reading(raw: bytes) -> None:
    assert _outcome(lambda r: codec.loads(r, _strict_loads), raw) == _outcome(_strict_loads, raw)
    assert _outcome(codec.loads, raw) == _outcome(json.loads, raw)


@PROFILE
@given(json_values, st.booleans())
def test_loads_reads_any_json_text_as_json_does(value: Any, ascii_only: bool) -> None:
    _same_reading(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


@PROFILE
@given(st.binary(max_size=300))
def test_loads_reads_any_bytes_as_json_does(raw: bytes) -> None:
    _same_reading(raw)


@pytest.mark.parametrize("raw", [b"[9223372036854775808]", b"[-9223372036854775809]", b"[1e400]", b"NaN",
                                 b'"\\ud800"', b"\xef\xbb\xbf[1]", b'"\xff"', b"[" * 5000, b"1" * 5000])
def test_loads_edges_orjson_reads_otherwise(raw: bytes) -> None:
    _same_reading(raw)


def _only_json_writes(value: Any) -> bool:
    """True when `value` holds what orjson will not write as `json` does: a NaN or an infinity,
    or a lone surrogate in a string or a key (judged on the value: a key spelled "NaN" is text)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_only_json_writes(k) or _only_json_writes(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_only_json_writes(v) for v in value)
    return False


@PROFILE
@given(json_values, st.booleans())
def test_a_value_orjson_read_holds_no_lone_surrogate_nor_non_finite_number(value: Any, ascii_only: bool) -> None:
    # What yadtq.task.messages.decode relies on to skip its walk of a task's value.
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    got, by_orjson = codec.parse(raw)
    assert not (by_orjson and _only_json_writes(got))


@PROFILE
@given(json_values)
def test_dumps_writes_the_value_json_writes(value: Any) -> None:
    try:
        expected = json.dumps(value, separators=(",", ":"))
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            codec.dumps(value)
        return
    got = codec.dumps(value)
    if _only_json_writes(value):
        assert got == expected.encode()  # `json`'s own text: orjson would not write it so
    assert json.dumps(json.loads(got)) == json.dumps(json.loads(expected))


@PROFILE
@given(json_values | st.builds(lambda: {"x": object()}) | st.builds(lambda: [1.5, {1: "int key"}]))
def test_the_encoders_made_once_write_what_json_dumps_writes_or_raise_its_error(value: Any) -> None:
    for made_once, options in ((codec.strict_compact, {}), (codec.canonical, {"sort_keys": True})):
        try:
            expected = json.dumps(value, separators=(",", ":"), allow_nan=False, **options)
        except (ValueError, TypeError) as exc:
            with pytest.raises(type(exc), match="^" + re.escape(str(exc)) + "$"):
                made_once(value)
            continue
        assert made_once(value) == expected


def test_dumps_passes_what_json_cannot_write_to_default() -> None:
    from dataclasses import dataclass
    from datetime import datetime

    @dataclass
    class Point:
        x: int

    got = json.loads(codec.dumps({"p": Point(1), "at": datetime(2026, 1, 2)}, default=str))
    assert got == {"p": "test_dumps_passes_what_json_cannot_write_to_default.<locals>.Point(x=1)",
                   "at": "2026-01-02 00:00:00"}
    assert math.isnan(json.loads(codec.dumps({"x": math.nan}))["x"])


def _typed(a: int, b: float, c: str = "", d: bool = False) -> None: ...
def _free(a, b=1): ...  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
def _star(a: int, *rest: int) -> None: ...


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([_typed, _free, _star]),
       st.lists(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.text(max_size=3),
                          st.none()), max_size=5),
       st.dictionaries(st.sampled_from(["a", "b", "c", "z"]), st.integers(), max_size=2))
def test_quick_argument_check_agrees_with_the_full_check(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    quick = Task("t", fn, signature=inspect.signature(fn))
    full = Task("t", fn, signature=inspect.signature(fn))
    full.__dict__["_quick_check"] = None  # the full check alone

    def verdict(task: Task) -> str | None:
        try:
            task.check_args(args, kwargs)
        except TaskArgumentError as exc:
            return str(exc)
        return None

    assert verdict(quick) == verdict(full)


@PROFILE
@given(json_values)
def test_dumps_line_is_dumps_and_a_newline(value: Any) -> None:
    try:
        expected = codec.dumps(value, default=str)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            codec.dumps_line(value, default=str)
        return
    assert codec.dumps_line(value, default=str) == expected + b"\n"

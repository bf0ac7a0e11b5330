"""Any bytes on the tasks topic: the decoder and the worker's triage raise only their named errors.

Property-based (hypothesis): random bytes, random JSON values, random task-shaped
objects. A record that decodes must be safe for every later step: its
arguments re-encode as strict UTF-8 JSON (what the claim stores in Redis), its
digest and its own encoding work, and checking it against the registry raises
nothing but `TaskError`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import yadtq.task.builtins  # noqa: F401  (registers the built-ins)
from yadtq.errors import MessageError, ResultError, TaskError
from yadtq.task.messages import (
    MAX_DEPTH,
    ControlMessage,
    TaskMessage,
    body_digest,
    dead_letter_value,
    decode,
    sniff_task_id,
)
from yadtq.task.registry import registry as builtin_registry
from yadtq.task.results import encode_result

LIMIT = 64 * 1024
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text with everything JSON can carry, lone surrogates included (json.dumps escapes them).
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
scalars = st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**400), max_value=10**400) \
    | st.floats(allow_nan=True, allow_infinity=True) | texts
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(texts, inner, max_size=5), max_leaves=40)
task_names = st.sampled_from(["add", "multiply", "sleep", "fail", "echo", "teleport", ""]) | texts
task_bodies = st.fixed_dictionaries(
    {},
    optional={"task-id": st.one_of(texts, st.integers(), st.none(), st.just("t-1")),
              "task": st.one_of(task_names, st.integers(), st.lists(texts, max_size=2)),
              "args": st.one_of(st.lists(json_values, max_size=4), json_values),
              "kwargs": st.one_of(st.dictionaries(texts, json_values, max_size=3), json_values),
              "tries": st.one_of(st.integers(), st.floats(), st.booleans(), texts),
              "submitted-at": st.one_of(st.floats(), st.integers(), texts),
              "time-limit": st.one_of(st.floats(), st.integers(min_value=-10, max_value=10**30), texts),
              "control": st.one_of(st.just("end"), texts, st.integers()),
              "id": json_values, "token": json_values})


def _dump(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _triage(raw: bytes) -> TaskMessage | ControlMessage | None:
    """What the worker does with a record before claiming it; only named errors may escape."""
    try:
        msg = decode(raw, LIMIT)
    except MessageError as exc:
        assert exc.task_id is None or (isinstance(exc.task_id, str) and 0 < len(exc.task_id) <= 200)
        return None
    if isinstance(msg, ControlMessage):
        assert msg.control == "end" and isinstance(msg.id, str) and isinstance(msg.token, str)
        return msg
    # Everything the claim and the task record need must work on what decoded.
    json.dumps(list(msg.args), allow_nan=False).encode("utf-8")
    json.dumps(msg.kwargs, allow_nan=False).encode("utf-8")
    assert len(msg.digest) == 40 and msg.digest == body_digest(msg.task, list(msg.args), msg.kwargs)
    again = decode(msg.encode(), LIMIT * 2)
    assert isinstance(again, TaskMessage) and again.digest == msg.digest and again.task_id == msg.task_id
    try:
        builtin_registry.get(msg.task).check_args(msg.args, msg.kwargs)
    except TaskError:
        pass
    return msg


@PROFILE
@given(st.binary(max_size=2000))
def test_any_bytes_decode_or_raise_message_error(raw: bytes) -> None:
    _triage(raw)


@PROFILE
@given(json_values, st.booleans())
def test_any_json_value_decodes_or_raises_message_error(value: Any, ascii_only: bool) -> None:
    _triage(_dump(value, ascii_only))


@PROFILE
@given(task_bodies, st.booleans())
def test_any_task_shaped_object_decodes_or_raises_message_error(body: dict[str, Any], ascii_only: bool) -> None:
    _triage(_dump(body, ascii_only))


@PROFILE
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=400))
def test_dead_letter_value_fits_the_limit_and_says_what_was_cut(raw: bytes, limit: int) -> None:
    value, headers = dead_letter_value(raw, limit, "bad \udc80 record")
    h = dict(headers)
    assert len(value) <= limit and raw.startswith(value)
    assert int(h["size"]) == len(raw)
    assert ("truncated" in h) == (len(raw) > limit)
    assert h["error"].startswith(b"bad ")


def _nested(depth: int) -> bytes:
    return b'{"task-id": "deep-1", "task": "add", "args": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(("raw", "reason", "task_id"), [
    (_nested(100_000), "nested deeper than", "deep-1"),
    (_nested(MAX_DEPTH + 1), "nested deeper than", "deep-1"),
    (b"[" * 100_000, "nested deeper than", None),
    (b'{"task-id": "n-1", "task": "add", "args": [' + b"9" * 5000 + b"]}", "not JSON", "n-1"),
    (b'{"task-id": "n-2", "task": "add", "args": [1e999, 1]}', "not JSON", "n-2"),
    (b'{"task-id": "n-3", "task": "add", "args": [NaN, 1]}', "not JSON", "n-3"),
    (b'{"task-id": "n-4", "task": "add", "args": [-Infinity, 1]}', "not JSON", "n-4"),
    (b'{"task-id": "u-1", "task": "add", "args": ["\xff\xfe", 1]}', "not JSON", "u-1"),
    (b'{"task-id": "s-1", "task": "add", "args": ["\\ud800", 1]}', "lone surrogate", "s-1"),
    (b'{"task-id": "s-2", "task": "add", "kwargs": {"\\udfff": 1}}', "lone surrogate", "s-2"),
    (b'{"task-id": "t-1", "task": "add", "tries": 100000000000000000000}', "'tries'", "t-1"),
    (b'{"task-id": "t-2", "task": "add", "time-limit": 1e300}', "'time-limit'", "t-2"),
    (b'{"task-id": 7, "task": "add"}', "task-id", None),
    (b'{"task": "add", "args": [1, 2]}', "task-id", None),
    (b'{"task-id": "a-1", "task": "add", "args": {"x": 1}}', "'args'", "a-1"),
    (b'{"control": "end", "token": 5}', "token", None),
    (b'{"control": "stop-everything"}', "unknown control", None),
    (b"", "not JSON", None),
    (b"\x00\x01 not json", "not JSON", None),
    (b'"just a string"', "expected a JSON object", None),
])
def test_hostile_records_are_refused_with_the_id_when_readable(raw: bytes, reason: str, task_id: str | None) -> None:
    with pytest.raises(MessageError) as info:
        decode(raw, 2_000_000)
    assert reason in str(info.value)
    assert info.value.task_id == task_id


def test_oversized_record_is_refused_before_parsing_and_keeps_its_id() -> None:
    raw = b'{"task-id": "big-1", "task": "add", "args": ["' + b"x" * 3000 + b'"]}'
    with pytest.raises(MessageError, match=f"message of {len(raw)} bytes exceeds the limit of 1000") as info:
        decode(raw, 1000)
    assert info.value.task_id == "big-1"
    value, headers = dead_letter_value(raw, 1000, str(info.value))
    assert value == raw[:1000] and dict(headers)["size"] == str(len(raw)).encode()


def test_sniffed_ids_are_only_plain_printable_strings() -> None:
    assert sniff_task_id(b'{"task_id" : "abc", ') == "abc"
    assert sniff_task_id(b'{"task-id": "a\\"b"}') is None
    assert sniff_task_id(b'{"task-id": "\xff\xfe"}') is None
    assert sniff_task_id(b'{"task-id": 12}') is None
    assert sniff_task_id(b'{"task-id": "' + b"x" * 300 + b'"}') is None


def test_control_token_round_trips_and_is_left_out_when_unset() -> None:
    assert decode(ControlMessage("end", "e1", "s3cret").encode(), 100) == ControlMessage("end", "e1", "s3cret")
    assert b"token" not in ControlMessage("end", "e1").encode()
    assert decode(b'{"control": "end"}', 100) == ControlMessage("end", "", "")


def test_digest_is_the_body_not_the_id_nor_its_spelling() -> None:
    a = TaskMessage("id-1", "add", (1, 2), {"b": [1.5, "é"], "a": None})
    b = decode(b'{"kwargs": {"a": null, "b": [1.5, "\\u00e9"]}, "args": [1, 2], "task": "add", "task-id": "id-2"}',
               1000)
    assert isinstance(b, TaskMessage) and a.digest == b.digest
    assert a.digest != TaskMessage("id-1", "add", (2, 1), a.kwargs).digest
    assert a.digest != TaskMessage("id-1", "multiply", (1, 2), a.kwargs).digest


def test_a_message_with_non_json_arguments_cannot_be_built() -> None:
    with pytest.raises(MessageError, match="not strict JSON"):
        TaskMessage("x", "add", (math.nan, 1)).encode()


@pytest.mark.parametrize(("value", "reason"), [
    (math.nan, "not strict JSON"), ([math.inf], "not strict JSON"), ({"x": -math.inf}, "not strict JSON"),
    ({1, 2}, "not JSON-serialisable"), (object(), "not JSON-serialisable"), ("x" * 2000, "exceeds"),
    (10 ** 5000, "not strict JSON"),
], ids=["nan", "inf", "-inf", "set", "object", "too-big", "huge-int"])
def test_results_that_cannot_be_stored_fail_with_a_clear_error(value: Any, reason: str) -> None:
    with pytest.raises(ResultError, match=reason):
        encode_result(value, 1000)


def test_results_that_fit_are_compact_strict_json() -> None:
    assert encode_result({"a": [1, 2.5, "é", None]}, 100) == '{"a":[1,2.5,"\\u00e9",null]}'
    assert encode_result("x" * 998, 1000) == '"' + "x" * 998 + '"'
    deep: list[Any] = []
    cur = deep
    for _ in range(100_000):
        cur.append([])
        cur = cur[0]
    with pytest.raises(ResultError, match="nested too deeply"):
        encode_result(deep, 10**9)

"""JSON on the hot path: orjson where its answer is the standard library's, `json` where it may not be.

Every task passes through about ten JSON encodings and decodings (its message, the claim's
arguments, its event lines), and orjson does each several times faster than `json`. The two
differ at the edges, so orjson's answer is taken only where it is known to be the same:

* `loads`: orjson reads an integer past 64 bits as a float, and refuses some inputs `json`
  reads (NaN, a lone surrogate escape, UTF-16). So a text with a run of 19 digits or more
  (what could be such an integer), or one orjson refuses, is read by `json` as before:
  the same value, or the same error, as `json` gives.
* `dumps`: orjson writes NaN and Infinity as null and refuses integers past 64 bits and
  lone surrogates; any output holding a `null`, and any refusal, is written by `json`
  instead. Non-ASCII text is written as UTF-8 rather than escaped: the same JSON value.

Digests (`yadtq.task.messages.canonical_json`) stay on `json`: they are compared as text
with those of older clients.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

# `json.dumps(value, separators=(",", ":"), allow_nan=False)` and the same with sorted keys (what digests
# are taken of), each made once: given any option, json.dumps builds a new encoder on every call, about
# 2 us of the 4 a small message costs. An encoder keeps no state between calls, so threads share these.
strict_compact = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode

# Types `json` has no encoding for that orjson would write by itself: handed to `default`.
_PASS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_LONG_DIGITS = re.compile(rb"\d{19}")


def loads(raw: bytes, fallback: Callable[[bytes], Any] = json.loads) -> Any:
    """`fallback(raw)`'s value (by default `json.loads`), mostly computed by orjson; errors
    are `fallback`'s own."""
    return parse(raw, fallback)[0]


def parse(raw: bytes, fallback: Callable[[bytes], Any] = json.loads) -> tuple[Any, bool]:
    """`loads`, and whether orjson read it: then the text was valid UTF-8 with no lone
    surrogate (escaped or not), and held no NaN or Infinity, so the value holds none either
    (`json` reads them all; a caller that refuses them need not look again)."""
    if _LONG_DIGITS.search(raw) is None:
        try:
            return orjson.loads(raw), True
        except orjson.JSONDecodeError:
            pass
    return fallback(raw), False


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """`json.dumps(value, separators=(",", ":"), default=default)` as UTF-8 bytes (the same
    JSON value; non-ASCII characters unescaped where orjson wrote them)."""
    try:
        out = orjson.dumps(value, default=default, option=_PASS)
        if b"null" not in out:
            return out
    except TypeError:  # orjson.JSONEncodeError: what it will not write, `json` decides
        pass
    return json.dumps(value, separators=(",", ":"), default=default).encode("utf-8", "surrogatepass")


def dumps_line(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """`dumps(value, default) + b"\n"`, orjson appending the newline (an event line's copy saved)."""
    try:
        out = orjson.dumps(value, default=default, option=_PASS | orjson.OPT_APPEND_NEWLINE)
        if b"null" not in out:
            return out
    except TypeError:
        pass
    return dumps(value, default) + b"\n"

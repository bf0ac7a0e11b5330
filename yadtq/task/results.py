"""Task results as stored: strict JSON (no NaN or Infinity), at most `max_result_bytes`.

A value that fails either rule is the task's failure (`ResultError`), never a
record other readers cannot parse nor a 50 MB hash field.
"""

from __future__ import annotations

from typing import Any

from yadtq import codec
from yadtq.errors import ResultError


def encode_result(value: Any, max_bytes: int) -> str:
    """`value` as compact strict JSON; raises `ResultError` when it cannot be stored.

    The text is ASCII (non-ASCII characters escaped), so its length is its
    size in bytes. The C encoder does the work: results are on every task's
    path, and one the size of the cap costs one more copy of it at most.
    """
    try:
        text = codec.strict_compact(value)
    except ValueError as exc:  # NaN/Infinity, circular references, ints too long to print
        raise ResultError(f"result is not strict JSON: {exc}") from None
    except TypeError as exc:
        raise ResultError(f"result is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise ResultError("result is nested too deeply to store as JSON") from None
    if len(text) > max_bytes:
        raise ResultError(f"result of {len(text)} bytes exceeds YADTQ_MAX_RESULT_BYTES ({max_bytes} bytes)")
    return text
